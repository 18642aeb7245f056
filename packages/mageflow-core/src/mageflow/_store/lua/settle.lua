-- The reconciler settles one signature by what the engine said about its
-- run: fail it (error callbacks fire, its container hears of a failed
-- member), cancel it (no callbacks of its own; its container hears of a
-- failed member, so a chain or swarm settles instead of stalling), or count
-- one more try: a re-send of its claim (the caller then sends it), or one
-- more look at a begun run the engine does not know. Only if the
-- signature is still where the sweep saw it: the same claimed dispatch, not
-- begun (run_id empty), or the same begun run; so when several reconcilers
-- race, one wins and the others get stale.
-- KEYS: sig_key, lock_key, pending_key, active_key
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, action, dispatch_id, run_id, payload, max_resends
-- REPLIES: ok, stale, exhausted
-- @include lib/containers
if not kind_of(sig_key) then return {R.stale, ''} end
if locked(lock_key, '') then return {R.stale, R.locked} end
local st = redis.call('HMGET', sig_key, F.status, F.dispatch, F.run, F.input, F.claim, F.resends)
local s, d, r, m, ce, rn = st[1], st[2], st[3], st[4], st[5], tonumber(st[6] or '0')
local fits
if run_id ~= '' then fits = r == run_id and (s == S.active or s == S.suspended)
else
  -- a claim: of a signature not begun, or of an active one whose retry is a
  -- new run (finish.lua) that has not begun either
  fits = (not r) and ce and d == dispatch_id
         and (s == S.pending or s == S.suspended or s == S.interrupted or s == S.active)
end
if not fits then return {R.stale, s} end
if action == 'resend' then
  -- one more try, within the bound: a claim is sent again; a begun run the
  -- engine does not know (yet: engines may lag) is asked about again
  if rn >= tonumber(max_resends) then return {R.exhausted, tostring(rn)} end
  redis.call('HSET', sig_key, F.resends, rn + 1)
  if run_id == '' then
    redis.call('HDEL', sig_key, F.engine_run)
    redis.call('ZADD', pending_key, now_ms(), sig_key)
  end
  return {R.ok, '[]'}
end
-- the message error callbacks get: the run's input, or a claim's message
if not m and ce then
  local e = cjson.decode(ce)
  if e[E.mode] == MODE.merge and type(e[E.value]) == 'string' then m = e[E.value] end
end
local target
if action == 'cancel' then target = step(s, EV.cancel)
else target = step(s, EV.fail) or step(step(s, EV.start), EV.fail) end
if not target then return {R.stale, s} end
local out = {}
if action ~= 'cancel' then
  claim_cbs(sig_key, F.callbacks_err, m or '{}', MODE.merge, out, payload)
end
redis.call('HSET', sig_key, F.status, target, F.last_status, s, F.error, payload)
track(prefix, sig_key, s, target, done_ttl)
redis.call('HDEL', sig_key, F.parked, F.claim)
redis.call('ZREM', pending_key, sig_key)
redis.call('ZREM', active_key, sig_key)
redis.call('PEXPIRE', sig_key, done_ttl)
bubble(string.sub(sig_key, #SP + 1), false, payload, m or '{}', out)
return {R.ok, encode(out)}
