-- Set bound kwargs (one hash field each) of a signature that has not finished.
-- KEYS: sig_key, lock_key
-- ARGV: token, active_ttl, fields...
-- REPLIES: ok
-- @include lib/prelude
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local s = redis.call('HGET', sig_key, F.status)
if terminal(s) then return {R.invalid, s} end
redis.call('HSET', sig_key, unpack(ARGV, ARGV_REST))
redis.call('PEXPIRE', sig_key, active_ttl)
return {R.ok}
