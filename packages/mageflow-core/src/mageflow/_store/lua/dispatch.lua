-- Run a signature on its own: claim a dispatch, or park the input of a
-- suspended signature until resume.
-- KEYS: sig_key, lock_key, pending_key
-- ARGV: token, input, dispatch_id, active_ttl, key
-- REPLIES: dispatch, parked
-- @include lib/prelude
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local f = redis.call('HMGET', sig_key, F.status, F.task, F.model, F.parent)
local s = f[1]
if f[4] then return {R.member, f[4]} end
-- a signature accepts a run where the table lets it start: it starts later,
-- when the run begins (BEGIN), or stays suspended with the run parked; an
-- active one already has its run (start there is that run's retry)
local target = step(s, EV.start)
if target and target ~= s then
  redis.call('HSET', sig_key, F.input, input, F.dispatch, dispatch_id)
  redis.call('HDEL', sig_key, F.run, F.parked)
  redis.call('PEXPIRE', sig_key, active_ttl)
  pend(pending_key, sig_key, cjson.encode(entry(key, dispatch_id, f[2], f[3], KIND.task, {}, {}, MODE.merge, input)))
  return {R.dispatch}
elseif target and s ~= S.active then
  redis.call('HSET', sig_key, F.input, input, F.parked, input, F.dispatch, dispatch_id)
  redis.call('PEXPIRE', sig_key, active_ttl)
  return {R.parked}
end
return {R.invalid, s}
