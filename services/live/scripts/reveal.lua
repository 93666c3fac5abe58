-- Moves up to N pending totals (answers to a question that has closed) onto the
-- board, so the board moves when the question closes, not while it is open.
-- KEYS: state, pending, board, changed. ARGV: N, now_ms.
-- Returns how many are still pending, or -1 when the state is missing (a rebuild
-- then works the totals out again).
local state, pending, board = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', state) == 0 then return -1 end
local batch = redis.call('ZRANGE', pending, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #batch == 0 then return 0 end
local args = {}
for i = 1, #batch, 2 do
  args[#args + 1] = batch[i + 1]
  args[#args + 1] = batch[i]
end
-- XX: a player taken off the board meanwhile stays off.
redis.call('ZADD', board, 'XX', unpack(args))
local members = {}
for i = 1, #batch, 2 do members[#members + 1] = batch[i] end
redis.call('ZREM', pending, unpack(members))
redis.call('SADD', KEYS[4], unpack(members))
redis.call('HINCRBY', state, 'version', 1)
redis.call('HSET', state, 'changed_at', ARGV[2])
return redis.call('ZCARD', pending)
