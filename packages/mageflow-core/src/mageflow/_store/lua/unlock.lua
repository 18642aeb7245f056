-- Release a lock, only when the caller still holds it.
-- KEYS: lock_key
-- ARGV: token
-- REPLIES: ok
if redis.call('GET', lock_key) == token then return {R.ok, redis.call('DEL', lock_key)} end
return {R.ok, 0}
