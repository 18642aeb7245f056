-- A lifecycle event from a user call (suspend, interrupt, resume, cancel...).
-- Resuming a signature with a parked or interrupted run re-claims that run;
-- retrying a failed or canceled task re-claims its last input.
-- The reply always has the same shape: code, status, previous status, run id
-- to cancel, input to replay, its dispatch id, kind, task name, and the run
-- options the caller gave (a replay is sent with them).
-- KEYS: sig_key, lock_key, pending_key
-- ARGV: event, token, active_ttl, done_ttl, dispatch_id, key
-- REPLIES: ok, noop, replay
-- @include lib/indexes
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local st = redis.call('HMGET', sig_key, F.status, F.last_status, F.parked, F.input, F.run, F.kind,
                      F.started, F.task, F.parent, F.run_options)
local pfx = string.sub(pending_key, 1, #pending_key - #K.pending)
local kind, tname = st[6] or KIND.task, st[8] or ''
local s, ls, pm, m, r = st[1], st[2], st[3], st[4], st[5]
-- start, succeed and fail belong to a run: BEGIN and FINISH apply them, with
-- what goes along (the run id, the outcome, callbacks, containers)
if RUN_EVENT[event] then return {R.invalid, s, R.run} end
local target = step(s, event, ls)
if not target then return {R.invalid, s} end
if event == EV.cancel and st[9] and target ~= s then
  -- a member of a chain or swarm that is still running is canceled with its
  -- container, never alone: the container would wait for it for ever
  local ps = redis.call('HGET', pfx .. K.sig .. st[9], F.status)
  if ps and not terminal(ps) then return {R.member, st[9]} end
end
if event == EV.retry then
  -- a retry re-runs one task with its stored input; a container member would
  -- report to a container that has settled, and a container has no input
  if kind ~= KIND.task then return {R.noretry, s, 'it is a ' .. kind} end
  if st[9] then return {R.noretry, s, 'it is a member of ' .. st[9]} end
  if not m then return {R.noretry, s, 'it never received an input (run it instead)'} end
end
-- a container has no run of its own to replay: one that had started goes
-- back to pending and starts again (active), and its members are resumed one
-- by one by the caller
if st[6] ~= KIND.task and st[7] and event == EV.resume and target == S.pending then
  target = step(target, EV.start)
end
-- The mirror of skip_cbs (lib/containers): the success callbacks a failure
-- skipped, their own callbacks and a container callback's members wait again,
-- and each callback counts this parent as holding it once more.
local function unskip()
  local sp = pfx .. K.sig
  local todo = {}
  for _, k in ipairs(list_field(sig_key, F.callbacks_ok)) do table.insert(todo, {k, true}) end
  local n = 0
  while #todo > 0 and n < 10000 do
    n = n + 1
    local item = table.remove(todo)
    local cf = sp .. item[1]
    if kind_of(cf) then
      if item[2] then redis.call('HINCRBY', cf, F.refs, 1) end
      local f = redis.call('HMGET', cf, F.status, F.kind)
      local back = step(f[1], EV.retry)
      if f[1] == S.skipped and back then
        redis.call('HSET', cf, F.status, back, F.last_status, f[1])
        track(pfx, cf, f[1], back, active_ttl)
        redis.call('PEXPIRE', cf, active_ttl)
        reached(todo, pfx, item[1], f[2])
      end
    end
  end
end
local replay = false
local run = ''
if event == EV.resume then
  if (s == S.suspended or s == S.pending) and pm then replay = pm
  -- an interrupted signature replays its parked run (parked while suspended,
  -- then interrupted), else the run that was cancelled
  elseif s == S.interrupted and (pm or m) then replay = pm or m end
  if replay then
    -- the replayed run starts over: back to the status before any run
    target = step(s, event, S.pending)
    redis.call('HSET', sig_key, F.parked, replay, F.dispatch, dispatch_id)
    pend(pending_key, sig_key, cjson.encode(entry(key, dispatch_id, tname, redis.call('HGET', sig_key, F.model),
      KIND.task, {}, {}, MODE.merge, replay)))
    redis.call('HDEL', sig_key, F.run)
  end
elseif event == EV.retry then
  -- a new attempt of the same signature: its last input is claimed again;
  -- callbacks that already ran stay as they are (a callback runs once)
  if s == S.failed then unskip() end
  replay = m
  redis.call('HSET', sig_key, F.parked, m, F.dispatch, dispatch_id)
  redis.call('HDEL', sig_key, F.run, F.result, F.error, F.outbox)
  pend(pending_key, sig_key, cjson.encode(entry(key, dispatch_id, tname, redis.call('HGET', sig_key, F.model),
    KIND.task, {}, {}, MODE.merge, m)))
elseif (event == EV.interrupt or event == EV.cancel) and r then
  run = r
elseif event == EV.cancel and target ~= s then
  -- a claim whose run has not begun: its queued engine run is cancelled
  -- too, or it would still arrive (and skip itself) long after. Interrupt
  -- keeps it: the arriving run is what keeps the input for resume.
  local f = redis.call('HMGET', sig_key, F.engine_run, F.claim)
  if f[1] and f[2] then run = f[1] end
end
if target == s and not replay then
  slide(sig_key, s, active_ttl, done_ttl)
  return {R.noop, s, ls or '', run, '', '', kind, tname, ''}
end
if target ~= s then
  redis.call('HSET', sig_key, F.status, target, F.last_status, s)
  track(pfx, sig_key, s, target, terminal(target) and done_ttl or active_ttl)
end
slide(sig_key, target, active_ttl, done_ttl)
if replay then return {R.replay, target, s, '', replay, dispatch_id, kind, tname, st[10] or ''} end
return {R.ok, target, s, run, '', '', kind, tname, ''}
