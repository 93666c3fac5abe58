-- One page of a live board with the quiz's status, atomically in one round trip.
-- KEYS: state, board, nicknames. ARGV: first and last index (0-based, inclusive).
-- Returns false when the quiz has no live state, else {status, total, rows, names}
-- (rows as ZREVRANGE ... WITHSCORES gives them).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local rows = redis.call('ZREVRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES')
local names = {}
if #rows > 0 then
  local ids = {}
  for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
  names = redis.call('HMGET', KEYS[3], unpack(ids))
end
return {status, redis.call('ZCARD', KEYS[2]), rows, names}
