-- Sets fields of a quiz's state hash and steps its version, only while the state
-- exists: if Redis lost it, a partial write would look like a whole quiz; recovery
-- rebuilds it instead. Returns 1 when applied, 0 when the state is missing.
-- KEYS: state. ARGV: version step, then field, value, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('HINCRBY', KEYS[1], 'version', tonumber(ARGV[1]))
return 1
