-- Takes up to ARGV[2] of the players whose board entry changed since the last
-- update, with their packed scores now (false: no longer on the board), and steps
-- the update sequence; once none are left, also the snapshot (snapshot.lua,
-- composed in as the function `snapshot`, KEYS[1..3] and ARGV[1]) that a copy
-- with every change applied is level with. All atomically.
-- KEYS: state, board, nicknames, changed. ARGV: top, most changes.
-- Returns false when the quiz has no live state, else
-- {generation, sequence, ids, scores, complete (1/0), snapshot or false}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local ids = redis.call('SPOP', KEYS[4], tonumber(ARGV[2]))
local scores = {}
if #ids > 0 then scores = redis.call('ZMSCORE', KEYS[2], unpack(ids)) end
local generation = redis.call('HGET', KEYS[1], 'board_generation') or 0
local sequence = redis.call('HINCRBY', KEYS[1], 'board_sequence', 1)
if redis.call('SCARD', KEYS[4]) > 0 then
  return {generation, sequence, ids, scores, 0, false}
end
return {generation, sequence, ids, scores, 1, snapshot()}
