-- Extend a lock to lock_ttl from now, only while the caller still holds it
-- (lock_task renews its lock in the background while the holder is inside).
-- KEYS: lock_key
-- ARGV: token, lock_ttl
-- REPLIES: ok
if redis.call('GET', lock_key) == token then return {R.ok, redis.call('PEXPIRE', lock_key, lock_ttl)} end
return {R.ok, 0}
