-- A player's place on a live board with up to N neighbours on each side.
-- KEYS: state, board, nicknames. ARGV: player id, N.
-- Returns false when the quiz has no live state, {status, total} when the player
-- is not on the board, else {status, total, player's index, first index, rows, names}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local total = redis.call('ZCARD', KEYS[2])
local index = redis.call('ZREVRANK', KEYS[2], ARGV[1])
if not index then return {status, total} end
local first = math.max(0, index - tonumber(ARGV[2]))
local rows = redis.call('ZREVRANGE', KEYS[2], first, index + tonumber(ARGV[2]), 'WITHSCORES')
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
return {status, total, index, first, rows, redis.call('HMGET', KEYS[3], unpack(ids))}
