-- The engine refused a dispatch, so nothing will ever run: the claim is
-- taken back as if it had not been made (the signature stays pending, its
-- input and run options go, nothing is left in the pending index).
-- KEYS: sig_key, pending_key
-- ARGV: dispatch_id
-- REPLIES: ok, stale
-- @include lib/prelude
if not kind_of(sig_key) then return {R.stale} end
local f = redis.call('HMGET', sig_key, F.dispatch, F.run, F.claim)
if f[1] ~= dispatch_id or f[2] or not f[3] then return {R.stale} end
unpend(pending_key, sig_key)
redis.call('HDEL', sig_key, F.dispatch, F.input, F.run_options, F.engine_run, F.resends, F.unknown_since)
return {R.ok}
