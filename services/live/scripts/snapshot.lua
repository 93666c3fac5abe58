-- What a leaderboard snapshot shows of a live quiz, atomically in one round trip.
-- KEYS: state, board, nicknames. ARGV: how many of the best players.
-- Returns false when the quiz has no live state, else
-- {status, version, question, changed_at, answers to the question, total, rows, names}
-- (missing fields as false; rows as ZREVRANGE ... WITHSCORES gives them).
local st = redis.call('HMGET', KEYS[1], 'status', 'version', 'question', 'changed_at')
if not st[1] then return false end
local answers = false
if st[3] and tonumber(st[3]) >= 0 then
  answers = redis.call('HGET', KEYS[1], 'answers:' .. st[3])
end
local rows = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local names = {}
if #rows > 0 then
  local ids = {}
  for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
  names = redis.call('HMGET', KEYS[3], unpack(ids))
end
return {st[1], st[2], st[3], st[4], answers, redis.call('ZCARD', KEYS[2]), rows, names}
