-- Take a signature's lock and read the signature in the same step.
-- KEYS: sig_key, lock_key
-- ARGV: token, lock_ttl
-- REPLIES: ok, busy
-- @include lib/prelude
local bad = check(sig_key); if bad then return bad end
if redis.call('SET', lock_key, token, 'NX', 'PX', lock_ttl) then return {R.ok, redis.call('HGETALL', sig_key)} end
return {R.busy}
