-- The reconciler settles one signature by what the engine said about its
-- run: fail it (error callbacks fire, its container hears of a failed
-- member), cancel it (no callbacks of its own; its container hears of a
-- failed member, so a chain or swarm settles instead of stalling), re-send
-- its claim (the caller then sends it), or doubt: the engine does not know
-- a run it named. Only if the signature is still where the sweep saw it:
-- the same claimed dispatch, not begun (run_id empty), or the same begun
-- run; so when several reconcilers race, one wins and the others get stale.
--
-- Doubt is bounded by time, not by looks: an engine's read side may lag
-- behind the runs it starts (Hatchet's REST API reads tables it writes
-- asynchronously), so the first look that finds a named run unknown starts
-- a clock (Redis' own, F.unknown_since) and only window_ms after it is the
-- run taken for lost. A begun run in doubt is left until then, and then
-- fails (it is never re-sent: its body may have run). A claim in doubt is
-- re-sent within max_resends (a duplicate run skips itself), and its last
-- re-send is not given up on before the window ends either. 'known' stops
-- the clock: the engine answered for the run after all.
-- KEYS: sig_key, lock_key, pending_key, active_key
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, action, dispatch_id, run_id, payload, max_resends, window_ms
-- REPLIES: ok, stale, exhausted, wait
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
if action == 'known' then
  redis.call('HDEL', sig_key, F.unknown_since)
  return {R.ok, '[]'}
end
if action == 'resend' or action == 'doubt' then
  local now = now_ms()
  local since = tonumber(redis.call('HGET', sig_key, F.unknown_since) or '')
  if action == 'doubt' and not since then
    since = now
    redis.call('HSET', sig_key, F.unknown_since, now)
  end
  local waited = since and now - since or 0
  local within = since ~= nil and waited < tonumber(window_ms)
  if run_id == '' then
    if rn < tonumber(max_resends) then
      redis.call('HSET', sig_key, F.resends, rn + 1)
      redis.call('HDEL', sig_key, F.engine_run)
      redis.call('ZADD', pending_key, now, sig_key)
      return {R.ok, '[]'}
    end
    if within then return {R.wait, tostring(waited)} end
    return {R.exhausted, tostring(rn)}
  end
  if action == 'resend' then return {R.stale, s} end  -- a begun run is never re-sent
  if within then return {R.wait, tostring(waited)} end
  -- in doubt for the whole window: the run is taken for lost and fails below
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
redis.call('HDEL', sig_key, F.parked, F.claim, F.unknown_since)
redis.call('ZREM', pending_key, sig_key)
redis.call('ZREM', active_key, sig_key)
redis.call('PEXPIRE', sig_key, done_ttl)
bubble(string.sub(sig_key, #SP + 1), false, payload, m or '{}', out)
return {R.ok, encode(out)}
