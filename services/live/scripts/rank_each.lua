-- Rank (0-based) and packed score of each named player: -1 and false for one not
-- on the board. KEYS: board. ARGV: player ids.
local out = {}
for i, member in ipairs(ARGV) do
  local rank = redis.call('ZREVRANK', KEYS[1], member)
  if rank then
    out[#out + 1] = rank
    out[#out + 1] = redis.call('ZSCORE', KEYS[1], member)
  else
    out[#out + 1] = -1
    out[#out + 1] = false
  end
end
return out
