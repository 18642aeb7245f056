-- Chains and swarms. A script that includes this declares the container
-- arguments first in its ARGV: prefix, active_ttl, dispatch_prefix (the
-- prefix of the dispatch ids this call hands out), and done_ttl when it may
-- settle a container. Its reply carries the
-- dispatches it claimed (an outbox) as JSON, each an entry() whose value
-- the signature receives injected as a return value (MODE.inject) or merged
-- as its message (MODE.merge).
-- @include lib/indexes
local SP, XP = prefix .. K.sig, prefix .. K.swarm
local PENDING = prefix .. K.pending
local seq = 0
local function nid() seq = seq + 1; return dispatch_prefix .. ':' .. seq end
local function read(full)
  local h = redis.call('HGETALL', full)
  local kw, meta = {}, {}
  local kp = #KWARG_PREFIX
  for j = 1, #h, 2 do
    local f = h[j]
    if string.sub(f, 1, kp) == KWARG_PREFIX then kw[string.sub(f, kp + 1)] = h[j + 1] else meta[f] = h[j + 1] end
  end
  return kw, meta
end
local function claim(mk, how, v, pkw, er)
  local full = SP .. mk
  if not kind_of(full) then return nil end
  local kw, meta = read(full)
  -- an interrupted signature is claimed too: its run is skipped on arrival
  -- (BEGIN keeps the input) and replayed on resume, so it is never lost
  local s = meta[F.status]
  if s ~= S.pending and s ~= S.suspended and s ~= S.interrupted then return nil end
  local did = nid()
  redis.call('HSET', full, F.dispatch, did)
  redis.call('PEXPIRE', full, active_ttl, 'GT')
  local e = entry(mk, did, meta[F.task], meta[F.model], meta[F.kind], kw, pkw or {}, how, v)
  if er then e[E.error] = er end
  pend(PENDING, full, cjson.encode(e))
  return e
end
-- callback keys that were no longer stored when their parent settled
local MISSING = {}
local function claim_cbs(full, field, v, how, out, er)
  local gone = {}
  for _, ck in ipairs(list_field(full, field)) do
    local e = claim(ck, how, v, {}, er)
    if e then table.insert(out, e)
    elseif kind_of(SP .. ck) == nil then
      -- deleted before its parent ran: it cannot run, but it must not vanish
      -- without a trace either (recorded on the parent, reported to the caller)
      table.insert(gone, ck)
      table.insert(MISSING, ck)
    end
  end
  if #gone > 0 then redis.call('HSET', full, F.missing_callbacks, cjson.encode(gone)) end
end
-- The callbacks of the branch a settled parent did not take will never fire
-- from it: each one that no other unsettled parent still holds (its refs
-- count reaches 0) and that nothing has claimed becomes skipped, and so, in
-- turn, do its own callbacks and, for a container, its members.
-- todo: {key, counted} pairs; counted when the key is a callback whose refs
-- count the parent held. Each signature changes status at most once here, so
-- the walk ends; the bound only guards against a corrupted store.
local function skip_all(todo)
  local n = 0
  while #todo > 0 and n < 1000000 do
    n = n + 1
    local item = table.remove(todo)
    local ck, counted = item[1], item[2]
    local cf = SP .. ck
    if kind_of(cf) then
      local left = 0
      if counted then left = redis.call('HINCRBY', cf, F.refs, -1) end
      -- another unsettled parent still holds it: nothing to read or write
      local s = left <= 0 and redis.call('HGET', cf, F.status) or S.active
      local skipped_to = step(s, EV.skip)
      if skipped_to and skipped_to ~= s and redis.call('HEXISTS', cf, F.dispatch) == 0 then
        redis.call('HSET', cf, F.status, skipped_to, F.last_status, s)
        track(prefix, cf, s, skipped_to, done_ttl)
        redis.call('PEXPIRE', cf, done_ttl)
        reached(todo, prefix, ck, redis.call('HGET', cf, F.kind))
      end
    end
  end
end
local function skip_cbs(full, field, claimed)
  local todo = {}
  for _, ck in ipairs(list_field(full, field)) do
    if not claimed[ck] then table.insert(todo, {ck, true}) end
  end
  skip_all(todo)
end
-- A container failed: what it never reached will never run (a member cannot
-- be retried on its own), so the chain's later steps and the swarm's queued
-- members become skipped rather than pending until their TTL.
local function skip_unreached(pf)
  local kind = redis.call('HGET', pf, F.kind)
  local todo = {}
  if kind == KIND.chain then
    local tasks = list_field(pf, F.chain_tasks)
    local at = tonumber(redis.call('HGET', pf, F.chain_index) or '0')
    for i = at + 2, #tasks do table.insert(todo, {tasks[i], false}) end
  elseif kind == KIND.swarm then
    local q = XP .. string.sub(pf, #SP + 1) .. K.queue
    for _, k in ipairs(redis.call('LRANGE', q, 0, -1)) do table.insert(todo, {k, false}) end
    redis.call('DEL', q)
    -- the counters still add up: admitted = running + queued + ok + bad + skipped
    if #todo > 0 then redis.call('HSET', pf, F.skipped, #todo) end
  end
  skip_all(todo)
end
-- A parent settled: claim the callbacks of the branch it took, skip the others.
local function fire_cbs(full, succeeded, val, input, out, er)
  local first = #out
  if succeeded then claim_cbs(full, F.callbacks_ok, val, MODE.inject, out)
  else claim_cbs(full, F.callbacks_err, input or '{}', MODE.merge, out, er) end
  local claimed = {}
  for i = first + 1, #out do claimed[out[i][E.key]] = true end
  skip_cbs(full, succeeded and F.callbacks_err or F.callbacks_ok, claimed)
end
local function member_kw(pf)
  local kw, meta = read(pf)
  local merged = {}
  local outer = meta[F.inherited]
  if outer and outer ~= '[]' then
    for n, v in pairs(cjson.decode(outer)) do merged[n] = v end
  end
  for n, v in pairs(kw) do merged[n] = v end
  return merged
end
-- How many members a swarm keeps claimed (sent to the engine), given how
-- many it has: max_concurrency at least; with prefetch, up to that many more
-- queued in the engine ahead of free places (BEGIN holds the bodies to the
-- cap). Claims ahead are topped up in batches of a quarter of the prefetch,
-- so they reach the engine in one bigger bulk call rather than one per
-- completion; they pause for a while after a run found every place taken
-- (idle workers would take them and wait).
local function swarm_target(pf, cfg, cap, claimed)
  local ahead = tonumber(cfg['prefetch']) or 0
  if ahead <= 0 or claimed > cap + ahead - math.max(1, math.floor(ahead / 4)) then return cap end
  local full_at = tonumber(redis.call('HGET', pf, F.full_at) or '0')
  if full_at > 0 and now_ms() - full_at < PREFETCH_PAUSE_MS then return cap end
  return cap + ahead
end
local function swarm_fill(p, pf, out)
  if redis.call('HGET', pf, F.status) ~= S.active then return end
  local cfg = cjson.decode(redis.call('HGET', pf, F.swarm_config))
  local cap = tonumber(cfg['max_concurrency'])
  local q = XP .. p .. K.queue
  local pkw = nil
  local claimed = tonumber(redis.call('HGET', pf, F.running) or '0')
  local want = swarm_target(pf, cfg, cap, claimed)
  while claimed < want do
    local mk = redis.call('LPOP', q)
    if not mk then break end
    pkw = pkw or member_kw(pf)
    local own = redis.call('HGET', SP .. mk, F.member_message)
    local e
    if own then e = claim(mk, MODE.merge, own, pkw)
    else
      e = claim(mk, redis.call('HGET', pf, F.start_mode) or MODE.merge,
                redis.call('HGET', pf, F.start_value) or '{}', pkw)
    end
    if e then
      claimed = redis.call('HINCRBY', pf, F.running, 1)
      table.insert(out, e)
    end
  end
end
-- error details of a failed swarm (its members have their own)
local function swarm_err(pf)
  local f = redis.call('HMGET', pf, F.failed, F.admitted)
  return cjson.encode({type = 'SwarmFailed',
                       message = (f[1] or '0') .. ' of ' .. (f[2] or '0') .. ' members failed'})
end
local function swarm_outcome(p, pf)
  local f = redis.call('HMGET', pf, F.swarm_closed, F.running, F.succeeded, F.failed, F.admitted)
  if f[1] ~= 'true' or tonumber(f[2] or '0') > 0 then return nil end
  if redis.call('LLEN', XP .. p .. K.queue) > 0 then return nil end
  local ok, bad, n = tonumber(f[3] or '0'), tonumber(f[4] or '0'), tonumber(f[5] or '0')
  if ok == 0 and bad > 0 then return S.failed, nil end
  -- the result list is never built here: callbacks get a reference and the
  -- worker reads the results hash in chunks (O(1) here, whatever n is)
  return S.done, cjson.encode({[REF.tag] = {[REF.kind] = REF.swarm, [REF.key] = p, [REF.count] = n}})
end
-- A container that is still working keeps its side lists and its callbacks
-- alive as long as itself; a settled one lets its lists go with the done TTL.
local function keep_alive(pf, ttl, settled)
  local sk = string.sub(pf, #SP + 1)
  if redis.call('HGET', pf, F.kind) == KIND.swarm then
    for _, sfx in ipairs({K.members, K.queue, K.results, K.busy}) do redis.call('PEXPIRE', XP .. sk .. sfx, ttl) end
  end
  if settled then return end
  for _, field in ipairs({F.callbacks_ok, F.callbacks_err}) do
    local raw = redis.call('HGET', pf, field)
    if raw and raw ~= '[]' and raw ~= '{}' then
      for _, ck in ipairs(cjson.decode(raw)) do redis.call('PEXPIRE', SP .. ck, ttl, 'GT') end
    end
  end
end
local function outcome_event(result)
  if result == S.done then return EV.succeed end
  return EV.fail
end
-- Returns what is reported upward: the result, or the error details.
local function settle(pf, ps, result, val, input, out)
  local target = step(ps, outcome_event(result))
  redis.call('HSET', pf, F.status, target, F.last_status, ps)
  track(prefix, pf, ps, target, done_ttl)
  if result == S.done then redis.call('HSET', pf, F.result, val)
  else
    val = val or swarm_err(pf)
    redis.call('HSET', pf, F.error, val)
    skip_unreached(pf)
  end
  redis.call('PEXPIRE', pf, done_ttl)
  keep_alive(pf, done_ttl, true)
  fire_cbs(pf, result == S.done, val, input, out, (result ~= S.done) and val or nil)
  return val
end
-- A member ended: update its container in O(1), start what comes next, and
-- settle the container (and, in turn, its own container) when it is complete.
local function bubble(child, succeeded, val, input, out)
  for _ = 1, 64 do
    local link = redis.call('HMGET', SP .. child, F.parent, F.parent_index)
    local p = link[1]
    if not p then return end
    local idx = tonumber(link[2])
    local pf = SP .. p
    if not kind_of(pf) then return end
    local pm = redis.call('HMGET', pf, F.kind, F.status)
    local pk, ps = pm[1], pm[2]
    local result, pval, pin = nil, nil, nil
    if pk == KIND.chain then
      if terminal(ps) then return end
      if succeeded then
        local tasks = cjson.decode(redis.call('HGET', pf, F.chain_tasks))
        if idx + 2 <= #tasks then
          local e = claim(tasks[idx + 2], MODE.inject, val, member_kw(pf))
          if e then
            table.insert(out, e)
            redis.call('HSET', pf, F.chain_index, idx + 1)
            redis.call('PEXPIRE', pf, active_ttl)
          else
            -- the next step is gone or already ran: the chain cannot go on
            result, pin = S.failed, input
            pval = cjson.encode({type = 'ChainBroken', message = 'step ' .. (idx + 1) .. ' ('
              .. tasks[idx + 2] .. ') is gone or already ran'})
          end
        else
          result, pval = S.done, val
        end
      else
        -- the chain fails with its step's error details
        result, pin, pval = S.failed, input, val
      end
    elseif pk == KIND.swarm then
      redis.call('HINCRBY', pf, F.running, -1)
      -- its place is free (a member that never began held none)
      redis.call('SREM', XP .. p .. K.busy, child)
      if succeeded then
        redis.call('HINCRBY', pf, F.succeeded, 1)
        redis.call('HSET', XP .. p .. K.results, tostring(idx), val)
      else
        redis.call('HINCRBY', pf, F.failed, 1)
      end
      if terminal(ps) then return end
      local cfg = cjson.decode(redis.call('HGET', pf, F.swarm_config))
      local lim = cfg['stop_after_n_failures']
      if (not succeeded) and type(lim) == 'number' and tonumber(redis.call('HGET', pf, F.failed)) >= lim then
        result, pin, pval = S.failed, input, swarm_err(pf)
      else
        swarm_fill(p, pf, out)
        local o, v = swarm_outcome(p, pf)
        if o == S.done then result, pval = S.done, v
        elseif o == S.failed then
          -- every member failed: error callbacks get the swarm's message, as when
          -- close_swarm settles it, whichever comes last
          result, pin = S.failed, redis.call('HGET', pf, F.start_value) or '{}'
        end
        redis.call('PEXPIRE', pf, active_ttl)
      end
    else
      return
    end
    if not result then
      keep_alive(pf, active_ttl, false)
      return
    end
    if not step(ps, outcome_event(result)) then
      -- an interrupted container does not finish: it keeps the outcome and
      -- settles when it is resumed (ADVANCE kick)
      redis.call('HSET', pf, F.held_outcome, cjson.encode({o = result, v = pval, i = pin}))
      keep_alive(pf, active_ttl, false)
      return
    end
    pval = settle(pf, ps, result, pval, pin, out)
    child, succeeded, val, input = p, result == S.done, pval, pin
  end
end
-- A container reached its outcome outside a member's completion (start of an
-- empty swarm, close, resume): settle it and report to its own container.
local function conclude(k, s, result, val, input, out)
  val = settle(k, s, result, val, input, out)
  bubble(string.sub(k, #SP + 1), result == S.done, val, input, out)
end
local function encode(out)
  if #out == 0 then return '[]' end
  return cjson.encode(out)
end
