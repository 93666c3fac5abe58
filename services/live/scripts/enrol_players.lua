-- New players of a quiz: each at 0 points ranked by when they joined (a player
-- already on the board keeps their place), with their nickname; the version steps
-- once per player. Applied only while the quiz's state exists (1), else nothing (0).
-- KEYS: state, board, nicknames, changed.
-- ARGV: the packed score of their join time, then player id, nickname, id, nickname, ...
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[i]) == 1 then
    redis.call('SADD', KEYS[4], ARGV[i])
  end
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HINCRBY', KEYS[1], 'version', (#ARGV - 1) / 2)
return 1
