-- Start a container (action start), or continue one after resume (kick):
-- claims its first step or its first swarm members, and settles it when it
-- already has its outcome.
-- KEYS: sig_key, lock_key
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, token, action, dispatch_id, mode, value, inherited
-- REPLIES: ok, skip, parked
-- @include lib/containers
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local key = string.sub(sig_key, #SP + 1)
local f = redis.call('HMGET', sig_key, F.status, F.dispatch, F.kind, F.started, F.parked_start)
local s, d, kind, started = f[1], f[2], f[3], f[4]
local out = {}
local starting = false
if action == 'start' then
  if dispatch_id ~= '' and d and d ~= dispatch_id then return {R.skip, R.stale} end
  if dispatch_id ~= '' then unpend(PENDING, sig_key) end
  -- the same start delivered again (its outbox was drained again after a lost
  -- dispatch): hand out what the first start claimed; duplicates skip themselves
  if dispatch_id ~= '' and started then return {R.ok, redis.call('HGET', sig_key, F.outbox) or '[]'} end
  if (s == S.suspended or s == S.interrupted) and not started then
    redis.call('HSET', sig_key, F.parked_start, '1', F.start_mode, mode, F.start_value, value, F.inherited, inherited)
    return {R.parked}
  end
  if s ~= S.pending or started then return {R.skip, s} end
  redis.call('HSET', sig_key, F.start_mode, mode, F.start_value, value, F.inherited, inherited)
  starting = true
elseif s == S.pending and f[5] then
  starting = true
end
if starting then
  local target = step(s, EV.start)
  redis.call('HSET', sig_key, F.status, target, F.last_status, s, F.started, '1')
  track(prefix, sig_key, s, target, active_ttl)
  redis.call('HDEL', sig_key, F.parked_start)
  s = target
  if kind == KIND.chain then
    local tasks = cjson.decode(redis.call('HGET', sig_key, F.chain_tasks))
    local e = claim(tasks[1], redis.call('HGET', sig_key, F.start_mode), redis.call('HGET', sig_key, F.start_value),
                    member_kw(sig_key))
    if e then table.insert(out, e) end
  end
end
local po = redis.call('HGET', sig_key, F.held_outcome)
if po and (s == S.active or s == S.suspended) then
  redis.call('HDEL', sig_key, F.held_outcome)
  local held = cjson.decode(po)
  conclude(sig_key, s, held['o'], held['v'], held['i'], out)
elseif kind == KIND.swarm and s == S.active then
  swarm_fill(key, sig_key, out)
  local o, v = swarm_outcome(key, sig_key)
  if o then
    conclude(sig_key, s, o, v, redis.call('HGET', sig_key, F.start_value), out)
  end
end
local obj = encode(out)
if starting and action == 'start' then redis.call('HSET', sig_key, F.outbox, obj) end
redis.call('PEXPIRE', sig_key, active_ttl, 'GT')
return {R.ok, obj}
