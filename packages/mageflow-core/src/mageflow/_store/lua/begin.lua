-- A run arrives at a worker: run it, skip it, park it (suspended), or hand
-- back the outbox of a finished run whose dispatches may have been lost.
-- A run that starts is listed in the active index until FINISH, so the
-- reconciler can ask the engine about a run that never finishes.
-- It also records the engine run ids of dispatches this worker sent before
-- (sent_keys with their dispatch and run ids, as sent.lua does), which
-- saves those a round trip of their own.
-- KEYS: sig_key, lock_key, pending_key, active_key, sent_keys...
-- ARGV: dispatch_id, run_id, input, active_ttl, sent_runs...
-- REPLIES: run, skip, park, drain
-- @include lib/indexes
record_sent(KEYS_REST, ARGV_REST)
local ok = kind_of(sig_key)
if ok == nil then return {R.skip, R.missing} end
if ok == false then return {R.corrupt} end
if locked(lock_key, '') then return {R.locked} end
local st = redis.call('HMGET', sig_key, F.status, F.dispatch, F.run)
local s, d, r = st[1], st[2], st[3]
if d == dispatch_id or terminal(s) then unpend(pending_key, sig_key) end
-- start: a new status means this run starts the signature; the same status
-- means a retry of the run that owns it (active) or a run to park (suspended)
local target = step(s, EV.start)
if target and target ~= s then
  if d and d ~= dispatch_id then return {R.skip, R.stale} end
  redis.call('HSET', sig_key, F.status, target, F.last_status, s, F.run, run_id,
             F.input, input, F.dispatch, dispatch_id)
  track(string.sub(pending_key, 1, #pending_key - #K.pending), sig_key, s, target, active_ttl)
  -- a new run: its retry budget is whole again
  redis.call('HDEL', sig_key, F.parked, F.resends, F.failures, F.failure_attempt, F.unknown_since)
  redis.call('PEXPIRE', sig_key, active_ttl)
  redis.call('ZADD', active_key, now_ms(), sig_key)
  return {R.run, redis.call('HGETALL', sig_key)}
elseif target == S.active then
  -- the run that owns it, or the new run finish.lua claimed for a retry the
  -- engine would not make
  if r == run_id or (not r and d == dispatch_id) then
    redis.call('HSET', sig_key, F.run, run_id)
    -- the engine just delivered the run: it knows it, whatever its read side said
    redis.call('HDEL', sig_key, F.unknown_since)
    redis.call('PEXPIRE', sig_key, active_ttl)
    redis.call('ZADD', active_key, now_ms(), sig_key)
    return {R.run, redis.call('HGETALL', sig_key)}
  end
  return {R.skip, R.duplicate}
elseif target then
  if d and d ~= dispatch_id and r ~= run_id then return {R.skip, R.stale} end
  -- another run already owns this dispatch: a duplicate delivery, not a retry
  if r and r ~= run_id then return {R.skip, R.duplicate} end
  redis.call('HSET', sig_key, F.parked, input, F.dispatch, dispatch_id)
  redis.call('PEXPIRE', sig_key, active_ttl)
  return {R.park}
elseif s == S.done or s == S.failed then
  local ob = redis.call('HGET', sig_key, F.outbox)
  if ob and r == run_id then
    return {R.drain, s, ob}
  end
  return {R.skip, R.finished}
elseif s == S.interrupted and d == dispatch_id and not r then
  -- interrupted before this run reached a worker: keep its input so resume
  -- replays it (a run claimed by a container has no input stored before now)
  redis.call('HSET', sig_key, F.input, input)
  redis.call('PEXPIRE', sig_key, active_ttl)
end
return {R.skip, s}
