-- Releases a lock only for the holder that took it (its token).
-- KEYS: lock. ARGV: token. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
