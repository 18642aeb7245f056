-- A run arrives at a worker: run it, skip it, park it (suspended), or hand
-- back the outbox of a finished run whose dispatches may have been lost.
-- A run that starts is listed in the active index until FINISH, so the
-- reconciler can ask the engine about a run that never finishes.
-- It also records the engine run ids of dispatches this worker sent before
-- (sent_keys with their dispatch and run ids, as sent.lua does), which
-- saves those a round trip of their own.
-- A swarm member's run also takes one of its swarm's max_concurrency
-- places (swarm:<key>:b): runs are claimed ahead of free places
-- (SwarmConfig.prefetch), so one may arrive while every place is taken; it
-- is told to wait (the worker asks again), and on its last try (give_up) it
-- hands its claim back: the member returns to the head of the queue and is
-- claimed again when a place frees. A claimed member whose swarm has ended
-- is not started: canceled with a canceled swarm, else skipped.
-- KEYS: sig_key, lock_key, pending_key, active_key, sent_keys...
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, dispatch_id, run_id, input, give_up, sent_runs...
-- REPLIES: run, skip, park, drain, wait
-- @include lib/containers
record_sent(KEYS_REST, ARGV_REST)
local function take_place(s)
  local p = redis.call('HGET', sig_key, F.parent)
  if not p then return nil end
  local pf = SP .. p
  local pm = redis.call('HMGET', pf, F.kind, F.status, F.swarm_config)
  if pm[1] ~= KIND.swarm then return nil end
  local member = string.sub(sig_key, #SP + 1)
  local busy = XP .. p .. K.busy
  if redis.call('SISMEMBER', busy, member) == 1 then return nil end
  if pm[2] == S.canceled then
    -- the swarm's cancel has not reached this member yet: it is canceled as
    -- that cancel would (the caller then cancels its run in the engine too)
    local to = step(s, EV.cancel)
    if to then
      unpend(pending_key, sig_key)
      redis.call('HSET', sig_key, F.status, to, F.last_status, s)
      track(prefix, sig_key, s, to, done_ttl)
      redis.call('PEXPIRE', sig_key, done_ttl)
      return {R.skip, to}
    end
  elseif terminal(pm[2]) then
    -- it never began and never will: skipped like the swarm's queued members
    -- (its own callbacks with it), and the counters still add up
    unpend(pending_key, sig_key)
    redis.call('HDEL', sig_key, F.dispatch)
    skip_all({{member, false}})
    if redis.call('HGET', sig_key, F.status) == S.skipped then
      redis.call('HINCRBY', pf, F.running, -1)
      redis.call('HINCRBY', pf, F.skipped, 1)
    end
    return {R.skip, S.skipped}
  end
  if redis.call('SCARD', busy) < tonumber(cjson.decode(pm[3])['max_concurrency']) then
    redis.call('SADD', busy, member)
    redis.call('PEXPIRE', busy, active_ttl)
    return nil
  end
  redis.call('HSET', pf, F.full_at, now_ms())
  if give_up ~= '1' then return {R.wait} end
  -- a redelivery of this run finds another dispatch id: stale
  unpend(pending_key, sig_key)
  redis.call('HSET', sig_key, F.dispatch, R.deferred .. ':' .. dispatch_id)
  redis.call('HDEL', sig_key, F.engine_run, F.resends)
  redis.call('LPUSH', XP .. p .. K.queue, member)
  redis.call('HINCRBY', pf, F.running, -1)
  return {R.skip, R.deferred}
end
local ok = kind_of(sig_key)
if ok == nil then return {R.skip, R.missing} end
if ok == false then return {R.corrupt} end
if locked(lock_key, '') then return {R.locked} end
local st = redis.call('HMGET', sig_key, F.status, F.dispatch, F.run)
local s, d, r = st[1], st[2], st[3]
-- This run answers the claim: it leaves the pending index, except while it
-- waits for a place in its swarm (take_place), when the reconciler must still
-- see the claim: a run lost while waiting would otherwise leave the member
-- claimed, never begun and watched by nobody.
local answered = d == dispatch_id or terminal(s)
-- start: a new status means this run starts the signature; the same status
-- means a retry of the run that owns it (active) or a run to park (suspended)
local target = step(s, EV.start)
if target and target ~= s then
  if d and d ~= dispatch_id then return {R.skip, R.stale} end
  local held = take_place(s)
  if held then return held end
  if answered then unpend(pending_key, sig_key) end
  redis.call('HSET', sig_key, F.status, target, F.last_status, s, F.run, run_id,
             F.input, input, F.dispatch, dispatch_id)
  track(prefix, sig_key, s, target, active_ttl)
  -- a new run: its retry budget is whole again
  redis.call('HDEL', sig_key, F.parked, F.resends, F.failures, F.failure_attempt, F.unknown_since)
  redis.call('PEXPIRE', sig_key, active_ttl)
  redis.call('ZADD', active_key, now_ms(), sig_key)
  return {R.run, redis.call('HGETALL', sig_key)}
end
if answered then unpend(pending_key, sig_key) end
if target == S.active then
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
