-- One page of a live board with the quiz's status, atomically in one round trip.
-- KEYS: state, board, nicknames. ARGV: how many entries, whether with nicknames
-- (1/0); then, after the first page, the cursor: the last entry's packed score
-- and player id. The page holds
-- the entries ranked right after that entry (exact ties on the packed score go to
-- the greater id first, as ZREVRANGE orders them), however the board moved since.
-- Returns false when the quiz has no live state, else
-- {status, total, rows, names, rank of the first row (0-based)}
-- (rows as ZREVRANGE ... WITHSCORES gives them).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local count, with_names = tonumber(ARGV[1]), ARGV[2] == '1'
local rows
if ARGV[3] == nil then
  rows = redis.call('ZREVRANGE', KEYS[2], 0, count - 1, 'WITHSCORES')
else
  local score, after = ARGV[3], ARGV[4]
  rows = {}
  -- Ties with the cursor's score that rank after it: the smaller ids.
  local ties = redis.call('ZRANGEBYSCORE', KEYS[2], score, score)
  for i = #ties, 1, -1 do
    if #rows >= 2 * count then break end
    if ties[i] < after then
      rows[#rows + 1] = ties[i]
      rows[#rows + 1] = score
    end
  end
  if #rows < 2 * count then
    local rest = redis.call(
      'ZREVRANGEBYSCORE', KEYS[2], '(' .. score, '-inf', 'WITHSCORES', 'LIMIT', 0, count - #rows / 2
    )
    for i = 1, #rest do rows[#rows + 1] = rest[i] end
  end
end
local names, first = {}, 0
if #rows > 0 and with_names then
  local ids = {}
  for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
  names = redis.call('HMGET', KEYS[3], unpack(ids))
end
if #rows > 0 then first = redis.call('ZREVRANK', KEYS[2], rows[1]) end
return {status, redis.call('ZCARD', KEYS[2]), rows, names, first}
