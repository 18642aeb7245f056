"""Every Redis key name, hash field, TTL conversion and Lua script of the store.

Layout (``P`` is the configured prefix, default ``mageflow:``)::

    P sig:<key>     hash    one signature (fields below)
    P lock:<key>    string  lock_task token, with its own expiry
    P pending       zset    full signature keys with a claimed dispatch whose
                            run has not arrived, scored by claim time (ms)
    P swarm:<key>:m list    a swarm's members in admission order (append-only)
    P swarm:<key>:q list    members admitted but not started yet (FIFO)
    P swarm:<key>:res hash  admission index -> member result (JSON)

Container fields: chain ``x:tasks`` (member keys), ``ci`` current step;
swarm ``x:config``, ``x:is_swarm_closed``, counters ``n`` admitted, ``run``
running, ``ok``/``bad`` finished; both: ``st`` started, ``smode``/``sv`` how
members receive the start value, ``pkw`` kwargs inherited from outer
containers, ``pst`` start parked by suspension. Member fields: ``p`` its
container, ``pi`` its index there, ``sm`` its own message in a swarm.

Signature hash fields: ``_v`` schema version; ``kind``; ``t`` task name;
``ct`` creation time; ``mv`` model import path; ``sc``/``ec`` callback keys
(JSON lists); ``ti`` identifiers (JSON); ``s``/``ls`` status and previous
status; ``d`` current dispatch id; ``r`` run id that owns the signature;
``m`` input of the current/last run; ``pm`` input of a parked run; ``ob``
outbox of callbacks claimed at completion (JSON); ``res``/``err`` outcome;
``k:<name>`` one bound kwarg each, as JSON; ``x:<name>`` container fields.

Keeping each kwarg in its own field makes ``kwargs.aupdate`` a plain HSET
(atomic, no JSON merging in Lua) and keeps a small signature in Redis'
compact listpack encoding.

The scripts reach signature keys they learn from stored data (callbacks,
members), so the store targets a single Redis/valkey node, not a cluster.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Final

from thirdmagic.status import TRANSITIONS

__all__ = [
    "F_CALLBACKS_ERR",
    "F_CALLBACKS_OK",
    "F_CREATED",
    "F_DISPATCH",
    "F_ERROR",
    "F_IDENT",
    "F_INPUT",
    "F_KIND",
    "F_LAST_STATUS",
    "F_MODEL",
    "F_OUTBOX",
    "F_PARKED",
    "F_RESULT",
    "F_RUN",
    "F_STATUS",
    "F_TASK",
    "F_VERSION",
    "KWARG_PREFIX",
    "SCHEMA_VERSION",
    "XFIELD_PREFIX",
    "Keys",
    "ms",
]

SCHEMA_VERSION: Final = "1"

F_VERSION: Final = "_v"
F_KIND: Final = "kind"
F_TASK: Final = "t"
F_CREATED: Final = "ct"
F_MODEL: Final = "mv"
F_CALLBACKS_OK: Final = "sc"
F_CALLBACKS_ERR: Final = "ec"
F_IDENT: Final = "ti"
F_STATUS: Final = "s"
F_LAST_STATUS: Final = "ls"
F_DISPATCH: Final = "d"
F_RUN: Final = "r"
F_INPUT: Final = "m"
F_PARKED: Final = "pm"
F_OUTBOX: Final = "ob"
F_RESULT: Final = "res"
F_ERROR: Final = "err"
KWARG_PREFIX: Final = "k:"
XFIELD_PREFIX: Final = "x:"


def ms(value: timedelta) -> int:
    return max(1, int(value.total_seconds() * 1000))


class Keys:
    """Key names under one prefix."""

    __slots__ = ("prefix", "sig_prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.sig_prefix = f"{prefix}sig:"

    def sig(self, key: str) -> str:
        return f"{self.sig_prefix}{key}"

    def lock(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    @property
    def pending(self) -> str:
        """Sorted set of claimed dispatches whose run has not arrived yet."""
        return f"{self.prefix}pending"

    @property
    def swarm_prefix(self) -> str:
        return f"{self.prefix}swarm:"

    def swarm_members(self, key: str) -> str:
        return f"{self.prefix}swarm:{key}:m"

    def swarm_queue(self, key: str) -> str:
        return f"{self.prefix}swarm:{key}:q"

    def swarm_results(self, key: str) -> str:
        return f"{self.prefix}swarm:{key}:res"


def _lua_transition_table() -> str:
    pairs = {
        f"{status.value}|{event.value}": str(target)
        for (status, event), target in TRANSITIONS.items()
    }
    body = ", ".join(f"[{json.dumps(k)}]={json.dumps(v)}" for k, v in sorted(pairs.items()))
    return "{" + body + "}"


# Shared helpers, prepended to every script. kind_of() tells a signature hash
# from a missing key (nil) and from foreign data (false), so no script ever
# writes over data it does not own.
_PRELUDE = """
local function kind_of(k)
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then return nil end
  if t ~= 'hash' or redis.call('HGET', k, '_v') ~= '1' then return false end
  return true
end
local function check(k)
  local ok = kind_of(k)
  if ok == nil then return {'missing'} end
  if ok == false then return {'corrupt'} end
  return nil
end
local function locked(lk, token)
  local h = redis.call('GET', lk)
  return h and h ~= token
end
local function terminal(s)
  return s == 'done' or s == 'failed' or s == 'canceled'
end
local function slide(k, s, active_ttl, done_ttl)
  if terminal(s) then redis.call('PEXPIRE', k, done_ttl) else redis.call('PEXPIRE', k, active_ttl) end
end
-- The pending index: every claimed dispatch is listed (scored by claim time)
-- with its entry on the signature ('ce') until its run arrives, so a dispatch
-- lost to a crash or an engine error is found and sent again by recover().
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pend(pk, k, entry)
  redis.call('ZADD', pk, now_ms(), k)
  redis.call('HSET', k, 'ce', entry)
end
local function unpend(pk, k)
  redis.call('ZREM', pk, k)
  redis.call('HDEL', k, 'ce')
end
"""

# KEYS: sig, required keys... ARGV: active_ttl, number of leading required
# keys that become members (chain steps), own key, field, value, ...
CREATE: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
if redis.call('EXISTS', k) == 1 then return {'exists'} end
local members = tonumber(ARGV[2])
local seen = {}
for i = 2, members + 1 do
  if seen[KEYS[i]] then return {'taken', KEYS[i]} end
  seen[KEYS[i]] = true
end
for i = 2, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {'missing', KEYS[i]} end
  if ok == false then return {'corrupt', KEYS[i]} end
  if i <= members + 1 and redis.call('HEXISTS', KEYS[i], 'p') == 1 then
    return {'taken', KEYS[i]}
  end
end
redis.call('HSET', k, unpack(ARGV, 4))
redis.call('PEXPIRE', k, ARGV[1])
for i = 2, #KEYS do
  if i <= members + 1 then redis.call('HSET', KEYS[i], 'p', ARGV[3], 'pi', i - 2) end
  redis.call('PEXPIRE', KEYS[i], ARGV[1], 'GT')
end
return {'ok'}
"""
)

# KEYS: sig, lock, pending index. ARGV: token, input, dispatch id, active_ttl, key
DISPATCH: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[1]) then return {'locked'} end
local f = redis.call('HMGET', k, 's', 't', 'mv', 'p')
local s = f[1]
if f[4] then return {'member', f[4]} end
if s == 'pending' then
  redis.call('HSET', k, 'm', ARGV[2], 'd', ARGV[3])
  redis.call('HDEL', k, 'r', 'pm')
  redis.call('PEXPIRE', k, ARGV[4])
  pend(KEYS[3], k, cjson.encode({key = ARGV[5], did = ARGV[3], t = f[2], mv = f[3],
    kind = 'task', kw = {}, pkw = {}, mode = 'merge', v = ARGV[2]}))
  return {'dispatch'}
elseif s == 'suspended' then
  redis.call('HSET', k, 'm', ARGV[2], 'pm', ARGV[2], 'd', ARGV[3])
  redis.call('PEXPIRE', k, ARGV[4])
  return {'parked'}
end
return {'invalid', s}
"""
)

# A run arrives at a worker. KEYS: sig, lock, pending index. ARGV: dispatch id,
# run id, input, active_ttl
BEGIN: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local ok = kind_of(k)
if ok == nil then return {'skip', 'missing'} end
if ok == false then return {'corrupt'} end
if locked(KEYS[2], '') then return {'locked'} end
local st = redis.call('HMGET', k, 's', 'd', 'r')
local s, d, r = st[1], st[2], st[3]
local did, run = ARGV[1], ARGV[2]
if d == did or terminal(s) then unpend(KEYS[3], k) end
if s == 'pending' then
  if d and d ~= did then return {'skip', 'stale'} end
  redis.call('HSET', k, 's', 'active', 'ls', 'pending', 'r', run, 'm', ARGV[3], 'd', did)
  redis.call('HDEL', k, 'pm')
  redis.call('PEXPIRE', k, ARGV[4])
  return {'run', redis.call('HGETALL', k)}
elseif s == 'active' then
  if r == run then
    redis.call('PEXPIRE', k, ARGV[4])
    return {'run', redis.call('HGETALL', k)}
  end
  return {'skip', 'duplicate'}
elseif s == 'suspended' then
  if d and d ~= did and r ~= run then return {'skip', 'stale'} end
  -- another run already owns this dispatch: a duplicate delivery, not a retry
  if r and r ~= run then return {'skip', 'duplicate'} end
  redis.call('HSET', k, 'pm', ARGV[3], 'd', did)
  redis.call('PEXPIRE', k, ARGV[4])
  return {'park'}
elseif s == 'done' or s == 'failed' then
  local f = redis.call('HMGET', k, 'ob', 'res', 'm')
  if f[1] and r == run then
    return {'drain', s, f[1]}
  end
  return {'skip', 'finished'}
elseif s == 'interrupted' and d == did and not r then
  -- interrupted before this run reached a worker: keep its input so resume
  -- replays it (a run claimed by a container has no input stored before now)
  redis.call('HSET', k, 'm', ARGV[3])
  redis.call('PEXPIRE', k, ARGV[4])
end
return {'skip', s}
"""
)

# Container-aware scripts share a header: ARGV[1] signature key prefix,
# ARGV[2] swarm key prefix, ARGV[3] active ttl, ARGV[4] done ttl, ARGV[5]
# prefix of the dispatch ids this call hands out. Their reply carries the
# dispatches it claimed (an outbox) as JSON; each entry names the signature,
# its dispatch id, its kwargs and those inherited from containers ("pkw"),
# and the value it receives: injected as a return value ("inject") or merged
# as a message ("merge").
_CONTAINERS = r"""
local SP, XP, ATTL, DTTL, DIDP = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local PENDING = string.sub(SP, 1, #SP - 4) .. 'pending'
local seq = 0
local function nid() seq = seq + 1; return DIDP .. ':' .. seq end
local function read(full)
  local h = redis.call('HGETALL', full)
  local kw, meta = {}, {}
  for j = 1, #h, 2 do
    local f = h[j]
    if string.sub(f, 1, 2) == 'k:' then kw[string.sub(f, 3)] = h[j + 1] else meta[f] = h[j + 1] end
  end
  return kw, meta
end
local function claim(key, mode, v, pkw)
  local full = SP .. key
  if not kind_of(full) then return nil end
  local kw, meta = read(full)
  -- an interrupted signature is claimed too: its run is skipped on arrival
  -- (BEGIN keeps the input) and replayed on resume, so it is never lost
  local s = meta['s']
  if s ~= 'pending' and s ~= 'suspended' and s ~= 'interrupted' then return nil end
  local did = nid()
  redis.call('HSET', full, 'd', did)
  redis.call('PEXPIRE', full, ATTL, 'GT')
  local e = {key = key, did = did, t = meta['t'], mv = meta['mv'], kind = meta['kind'],
             kw = kw, pkw = pkw or {}, mode = mode, v = v}
  pend(PENDING, full, cjson.encode(e))
  return e
end
local function claim_cbs(full, field, v, mode, out)
  local raw = redis.call('HGET', full, field)
  if not raw or raw == '[]' or raw == '{}' then return end
  for _, ck in ipairs(cjson.decode(raw)) do
    local e = claim(ck, mode, v, {})
    if e then table.insert(out, e) end
  end
end
local function member_kw(pf)
  local kw, meta = read(pf)
  local merged = {}
  if meta['pkw'] and meta['pkw'] ~= '[]' then
    for n, v in pairs(cjson.decode(meta['pkw'])) do merged[n] = v end
  end
  for n, v in pairs(kw) do merged[n] = v end
  return merged
end
local function swarm_fill(p, pf, out)
  if redis.call('HGET', pf, 's') ~= 'active' then return end
  local cfg = cjson.decode(redis.call('HGET', pf, 'x:config'))
  local cap = tonumber(cfg['max_concurrency'])
  local q = XP .. p .. ':q'
  local pkw = nil
  while tonumber(redis.call('HGET', pf, 'run') or '0') < cap do
    local mk = redis.call('LPOP', q)
    if not mk then break end
    pkw = pkw or member_kw(pf)
    local own = redis.call('HGET', SP .. mk, 'sm')
    local e
    if own then e = claim(mk, 'merge', own, pkw)
    else e = claim(mk, redis.call('HGET', pf, 'smode') or 'merge', redis.call('HGET', pf, 'sv') or '{}', pkw) end
    if e then
      redis.call('HINCRBY', pf, 'run', 1)
      table.insert(out, e)
    end
  end
end
local function swarm_outcome(p, pf)
  local f = redis.call('HMGET', pf, 'x:is_swarm_closed', 'run', 'ok', 'bad', 'n')
  if f[1] ~= 'true' or tonumber(f[2] or '0') > 0 then return nil end
  if redis.call('LLEN', XP .. p .. ':q') > 0 then return nil end
  local ok, bad, n = tonumber(f[3] or '0'), tonumber(f[4] or '0'), tonumber(f[5] or '0')
  if ok == 0 and bad > 0 then return 'failed', nil end
  local parts = {}
  local i = 0
  while i < n do
    local fields = {}
    for j = i, math.min(i + 999, n - 1) do fields[#fields + 1] = tostring(j) end
    local vals = redis.call('HMGET', XP .. p .. ':res', unpack(fields))
    for j = 1, #fields do parts[#parts + 1] = vals[j] or 'null' end
    i = i + 1000
  end
  return 'done', '[' .. table.concat(parts, ',') .. ']'
end
-- A container that is still working keeps its side lists and its callbacks
-- alive as long as itself; a settled one lets its lists go with the done TTL.
local function keep_alive(pf, ttl, settled)
  local sk = string.sub(pf, #SP + 1)
  if redis.call('HGET', pf, 'kind') == 'swarm' then
    for _, sfx in ipairs({':m', ':q', ':res'}) do redis.call('PEXPIRE', XP .. sk .. sfx, ttl) end
  end
  if settled then return end
  for _, field in ipairs({'sc', 'ec'}) do
    local raw = redis.call('HGET', pf, field)
    if raw and raw ~= '[]' and raw ~= '{}' then
      for _, ck in ipairs(cjson.decode(raw)) do redis.call('PEXPIRE', SP .. ck, ttl, 'GT') end
    end
  end
end
local function settle(pf, ps, outcome, value, input, out)
  redis.call('HSET', pf, 's', outcome, 'ls', ps)
  if outcome == 'done' then redis.call('HSET', pf, 'res', value) end
  redis.call('PEXPIRE', pf, DTTL)
  keep_alive(pf, DTTL, true)
  if outcome == 'done' then claim_cbs(pf, 'sc', value, 'inject', out)
  else claim_cbs(pf, 'ec', input or '{}', 'merge', out) end
end
-- A member ended: update its container in O(1), start what comes next, and
-- settle the container (and, in turn, its own container) when it is complete.
local function bubble(child, ok_, value, input, out)
  for _ = 1, 64 do
    local link = redis.call('HMGET', SP .. child, 'p', 'pi')
    local p = link[1]
    if not p then return end
    local idx = tonumber(link[2])
    local pf = SP .. p
    if not kind_of(pf) then return end
    local pm = redis.call('HMGET', pf, 'kind', 's')
    local pk, ps = pm[1], pm[2]
    local outcome, pval, pin = nil, nil, nil
    if pk == 'chain' then
      if terminal(ps) then return end
      if ok_ then
        local tasks = cjson.decode(redis.call('HGET', pf, 'x:tasks'))
        if idx + 2 <= #tasks then
          local e = claim(tasks[idx + 2], 'inject', value, member_kw(pf))
          if e then
            table.insert(out, e)
            redis.call('HSET', pf, 'ci', idx + 1)
            redis.call('PEXPIRE', pf, ATTL)
          else
            -- the next step is gone or already ran: the chain cannot go on
            outcome, pin = 'failed', input
          end
        else
          outcome, pval = 'done', value
        end
      else
        outcome, pin = 'failed', input
      end
    elseif pk == 'swarm' then
      redis.call('HINCRBY', pf, 'run', -1)
      if ok_ then
        redis.call('HINCRBY', pf, 'ok', 1)
        redis.call('HSET', XP .. p .. ':res', tostring(idx), value)
      else
        redis.call('HINCRBY', pf, 'bad', 1)
      end
      if terminal(ps) then return end
      local cfg = cjson.decode(redis.call('HGET', pf, 'x:config'))
      local lim = cfg['stop_after_n_failures']
      if (not ok_) and type(lim) == 'number' and tonumber(redis.call('HGET', pf, 'bad')) >= lim then
        outcome, pin = 'failed', input
      else
        swarm_fill(p, pf, out)
        local o, v = swarm_outcome(p, pf)
        if o == 'done' then outcome, pval = 'done', v
        elseif o == 'failed' then
          -- every member failed: error callbacks get the swarm's message, as when
          -- close_swarm settles it, whichever comes last
          outcome, pin = 'failed', redis.call('HGET', pf, 'sv') or '{}'
        end
        redis.call('PEXPIRE', pf, ATTL)
      end
    else
      return
    end
    if not outcome then
      keep_alive(pf, ATTL, false)
      return
    end
    if ps ~= 'active' and ps ~= 'suspended' then
      -- an interrupted container does not finish: it keeps the outcome and
      -- settles when it is resumed (ADVANCE kick)
      redis.call('HSET', pf, 'po', cjson.encode({o = outcome, v = pval, i = pin}))
      keep_alive(pf, ATTL, false)
      return
    end
    settle(pf, ps, outcome, pval, pin, out)
    child, ok_, value, input = p, outcome == 'done', pval, pin
  end
end
-- A container reached its outcome outside a member's completion (start of an
-- empty swarm, close, resume): settle it and report to its own container.
local function conclude(k, s, outcome, value, input, out)
  settle(k, s, outcome, value, input, out)
  bubble(string.sub(k, #SP + 1), outcome == 'done', value, input, out)
end
local function encode(out)
  if #out == 0 then return '[]' end
  return cjson.encode(out)
end
"""

# The last attempt of a run ended. Claims what the outcome starts (callbacks,
# the next chain step, queued swarm members, container callbacks) and records
# it as an outbox on the finished signature in the same atomic step, so a
# crash before the dispatches is repaired by the run's redelivery.
# KEYS: sig, lock. ARGV: header (see above; DIDP is the run id), outcome
# (succeed|fail), payload
FINISH: Final = (
    _PRELUDE
    + _CONTAINERS
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], '') then return {'locked'} end
local st = redis.call('HMGET', k, 's', 'r', 'ob', 'm')
local s, r, ob, m = st[1], st[2], st[3], st[4]
local succeed = ARGV[6] == 'succeed'
local target = succeed and 'done' or 'failed'
if s == target then
  if ob and r == DIDP then return {'already', ob} end
  return {'already', '[]'}
end
if s ~= 'active' and s ~= 'suspended' then return {'invalid', s} end
if r ~= DIDP then return {'stale', s} end
local out = {}
local payload = ARGV[7]
if succeed then claim_cbs(k, 'sc', payload, 'inject', out)
else claim_cbs(k, 'ec', m or '{}', 'merge', out) end
redis.call('HSET', k, 's', target, 'ls', s, succeed and 'res' or 'err', payload)
redis.call('HDEL', k, 'pm')
redis.call('PEXPIRE', k, DTTL)
bubble(string.sub(k, #SP + 1), succeed, payload, m or '{}', out)
local obj = encode(out)
redis.call('HSET', k, 'ob', obj)
return {'ok', obj}
"""
)

# Start a container (or continue one after resume). KEYS: container, lock.
# ARGV: header, token, action (start|kick), dispatch id or '', mode, value,
# inherited kwargs (JSON)
ADVANCE: Final = (
    _PRELUDE
    + _CONTAINERS
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[6]) then return {'locked'} end
local key = string.sub(k, #SP + 1)
local f = redis.call('HMGET', k, 's', 'd', 'kind', 'st', 'pst')
local s, d, kind = f[1], f[2], f[3]
local out = {}
local starting = false
if ARGV[7] == 'start' then
  if ARGV[8] ~= '' and d and d ~= ARGV[8] then return {'skip', 'stale'} end
  if ARGV[8] ~= '' then unpend(PENDING, k) end
  -- the same start delivered again (its outbox was drained again after a lost
  -- dispatch): hand out what the first start claimed; duplicates skip themselves
  if ARGV[8] ~= '' and f[4] then return {'ok', redis.call('HGET', k, 'ob') or '[]'} end
  if (s == 'suspended' or s == 'interrupted') and not f[4] then
    redis.call('HSET', k, 'pst', '1', 'smode', ARGV[9], 'sv', ARGV[10], 'pkw', ARGV[11])
    return {'parked'}
  end
  if s ~= 'pending' or f[4] then return {'skip', s} end
  redis.call('HSET', k, 'smode', ARGV[9], 'sv', ARGV[10], 'pkw', ARGV[11])
  starting = true
elseif s == 'pending' and f[5] then
  starting = true
end
if starting then
  redis.call('HSET', k, 's', 'active', 'ls', s, 'st', '1')
  redis.call('HDEL', k, 'pst')
  s = 'active'
  if kind == 'chain' then
    local tasks = cjson.decode(redis.call('HGET', k, 'x:tasks'))
    local e = claim(tasks[1], redis.call('HGET', k, 'smode'), redis.call('HGET', k, 'sv'), member_kw(k))
    if e then table.insert(out, e) end
  end
end
local po = redis.call('HGET', k, 'po')
if po and (s == 'active' or s == 'suspended') then
  redis.call('HDEL', k, 'po')
  local held = cjson.decode(po)
  conclude(k, s, held['o'], held['v'], held['i'], out)
elseif kind == 'swarm' and s == 'active' then
  swarm_fill(key, k, out)
  local o, v = swarm_outcome(key, k)
  if o then
    conclude(k, s, o, v, redis.call('HGET', k, 'sv'), out)
  end
end
local obj = encode(out)
if starting and ARGV[7] == 'start' then redis.call('HSET', k, 'ob', obj) end
redis.call('PEXPIRE', k, ATTL, 'GT')
return {'ok', obj}
"""
)

# Add members to a swarm. KEYS: swarm, lock. ARGV: header, token, count,
# then per member: key, own message JSON or ''
SWARM_ADD: Final = (
    _PRELUDE
    + _CONTAINERS
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[6]) then return {'locked'} end
local key = string.sub(k, #SP + 1)
local f = redis.call('HMGET', k, 's', 'x:is_swarm_closed', 'x:config', 'n', 'kind')
if f[5] ~= 'swarm' then return {'notswarm'} end
if f[2] == 'true' or terminal(f[1]) then return {'closed', f[1]} end
local cfg = cjson.decode(f[3])
local n = tonumber(f[4] or '0')
local cnt = tonumber(ARGV[7])
local lim = cfg['max_task_allowed']
if type(lim) == 'number' and n + cnt > lim then return {'full', tostring(n), tostring(lim)} end
local seen = {}
for i = 1, cnt do
  local mk = ARGV[6 + 2 * i]
  local ok = kind_of(SP .. mk)
  if ok == nil then return {'missing', mk} end
  if ok == false then return {'corrupt', mk} end
  if seen[mk] or mk == key or redis.call('HEXISTS', SP .. mk, 'p') == 1 then return {'taken', mk} end
  seen[mk] = true
end
for i = 1, cnt do
  local mk = ARGV[6 + 2 * i]
  local mf = SP .. mk
  redis.call('HSET', mf, 'p', key, 'pi', n + i - 1)
  if ARGV[7 + 2 * i] ~= '' then redis.call('HSET', mf, 'sm', ARGV[7 + 2 * i]) end
  redis.call('PEXPIRE', mf, ATTL, 'GT')
  redis.call('RPUSH', XP .. key .. ':m', mk)
  redis.call('RPUSH', XP .. key .. ':q', mk)
end
redis.call('HSET', k, 'n', n + cnt)
for _, sfx in ipairs({':m', ':q'}) do redis.call('PEXPIRE', XP .. key .. sfx, ATTL) end
local out = {}
swarm_fill(key, k, out)
redis.call('PEXPIRE', k, ATTL, 'GT')
return {'ok', encode(out)}
"""
)

# Close a swarm to new members. KEYS: swarm, lock. ARGV: header, token
SWARM_CLOSE: Final = (
    _PRELUDE
    + _CONTAINERS
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[6]) then return {'locked'} end
local key = string.sub(k, #SP + 1)
if redis.call('HGET', k, 'kind') ~= 'swarm' then return {'notswarm'} end
redis.call('HSET', k, 'x:is_swarm_closed', 'true')
local out = {}
local s = redis.call('HGET', k, 's')
if s == 'active' then
  local o, v = swarm_outcome(key, k)
  if o then
    conclude(k, s, o, v, redis.call('HGET', k, 'sv'), out)
  end
end
return {'ok', encode(out)}
"""
)

# A lifecycle event from a user call. KEYS: sig, lock, pending index. ARGV:
# event, token, active_ttl, done_ttl, new dispatch id, key
TRANSITION: Final = (
    _PRELUDE
    + "local T = "
    + _lua_transition_table()
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[2]) then return {'locked'} end
local st = redis.call('HMGET', k, 's', 'ls', 'pm', 'm', 'r', 'kind', 'st', 't')
local kind, tname = st[6] or 'task', st[8] or ''
local s, ls, pm, m, r = st[1], st[2], st[3], st[4], st[5]
local ev = ARGV[1]
local target = T[s .. '|' .. ev]
if not target then return {'invalid', s} end
if target == 'previous' then target = ls or 'pending' end
-- a container has no run of its own to replay: one that had started goes
-- back to active, and its members are resumed one by one by the caller
if st[6] ~= 'task' and st[7] and ev == 'resume' and target == 'pending' then target = 'active' end
local replay = false
local run = ''
if ev == 'resume' then
  if (s == 'suspended' or s == 'pending') and pm then replay = pm
  -- an interrupted signature replays its parked run (parked while suspended,
  -- then interrupted), else the run that was cancelled
  elseif s == 'interrupted' and (pm or m) then replay = pm or m end
  if replay then
    target = 'pending'
    redis.call('HSET', k, 'pm', replay, 'd', ARGV[5])
    pend(KEYS[3], k, cjson.encode({key = ARGV[6], did = ARGV[5], t = tname, mv =
      redis.call('HGET', k, 'mv'), kind = 'task', kw = {}, pkw = {}, mode = 'merge', v = replay}))
    redis.call('HDEL', k, 'r')
  end
elseif ev == 'interrupt' and r then
  run = r
end
if target == s and not replay then
  slide(k, s, ARGV[3], ARGV[4])
  return {'noop', s, ls or '', run, kind, tname}
end
if target ~= s then redis.call('HSET', k, 's', target, 'ls', s) end
slide(k, target, ARGV[3], ARGV[4])
if replay then return {'replay', target, s, replay, ARGV[5], kind, tname} end
return {'ok', target, s, run, kind, tname}
"""
)

# KEYS: sig, lock. ARGV: token, active_ttl, field, value, ...
UPDATE_KWARGS: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[1]) then return {'locked'} end
local s = redis.call('HGET', k, 's')
if terminal(s) then return {'invalid', s} end
redis.call('HSET', k, unpack(ARGV, 3))
redis.call('PEXPIRE', k, ARGV[2])
return {'ok'}
"""
)

# KEYS: sig, lock, callback sig keys... ARGV: token, active_ttl, n_success, keys...
ADD_CALLBACKS: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[1]) then return {'locked'} end
local s = redis.call('HGET', k, 's')
if terminal(s) then return {'invalid', s} end
for i = 3, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {'missing', KEYS[i]} end
  if ok == false then return {'corrupt', KEYS[i]} end
end
-- Both lists are merged before anything is written: a corrupted list is
-- reported and leaves the signature untouched (a script error would not
-- roll back an HSET already made).
local function merged(field, first, last)
  if last < first then return false end
  local raw = redis.call('HGET', k, field)
  local cur = {}
  if raw and raw ~= '[]' and raw ~= '{}' then
    local ok, v = pcall(cjson.decode, raw)
    if not ok or type(v) ~= 'table' then return nil end
    cur = v
  end
  local seen = {}
  for _, v in ipairs(cur) do seen[v] = true end
  for i = first, last do
    if not seen[ARGV[i]] then table.insert(cur, ARGV[i]); seen[ARGV[i]] = true end
  end
  return cjson.encode(cur)
end
local n_ok = tonumber(ARGV[3])
local sc = merged('sc', 4, 3 + n_ok)
local ec = merged('ec', 4 + n_ok, #ARGV)
if sc == nil or ec == nil then return {'corrupt'} end
if sc then redis.call('HSET', k, 'sc', sc) end
if ec then redis.call('HSET', k, 'ec', ec) end
redis.call('PEXPIRE', k, ARGV[2])
for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT') end
return {'ok'}
"""
)

# Deletes a signature and, recursively, the callbacks chosen. Nothing is
# deleted when any of them is locked by someone else or is foreign data.
# KEYS: sig. ARGV: held lock tokens (JSON object key -> token), with_error (0/1),
# with_success (0/1), sig prefix, lock
# prefix, swarm prefix
REMOVE: Final = (
    _PRELUDE
    + """
local root = KEYS[1]
local ok = kind_of(root)
if ok == nil then return {'ok', 0} end
if ok == false then return {'corrupt'} end
local sp, lp = ARGV[4], ARGV[5]
-- the caller's lock tokens by key: a holder of a container holds its members too
local held = cjson.decode(ARGV[1])
local todo = {string.sub(root, #sp + 1)}
local seen = {}
local doomed = {}
while #todo > 0 do
  local key = table.remove(todo)
  if not seen[key] then
    seen[key] = true
    local full = sp .. key
    if kind_of(full) then
      if locked(lp .. key, held[key] or '') then return {'locked', key} end
      table.insert(doomed, full)
      local f = redis.call('HMGET', full, 'sc', 'ec', 'x:tasks', 'kind')
      local lists = {}
      if ARGV[3] == '1' and f[1] then table.insert(lists, f[1]) end
      if ARGV[2] == '1' and f[2] then table.insert(lists, f[2]) end
      if f[3] then table.insert(lists, f[3]) end
      for _, raw in ipairs(lists) do
        if raw ~= '[]' and raw ~= '{}' then
          for _, child in ipairs(cjson.decode(raw)) do table.insert(todo, child) end
        end
      end
      if f[4] == 'swarm' then
        local xp = ARGV[6] .. key
        for _, child in ipairs(redis.call('LRANGE', xp .. ':m', 0, -1)) do table.insert(todo, child) end
        for _, sfx in ipairs({':m', ':q', ':res'}) do table.insert(doomed, xp .. sfx) end
      end
    end
  end
end
-- a member of a chain or swarm that is still running goes with its container,
-- never alone: the container would wait for it for ever
local gone = {}
for _, full in ipairs(doomed) do gone[full] = true end
for _, full in ipairs(doomed) do
  if string.sub(full, 1, #sp) == sp and kind_of(full) then
    local p = redis.call('HGET', full, 'p')
    if p and not gone[sp .. p] and kind_of(sp .. p) and not terminal(redis.call('HGET', sp .. p, 's')) then
      return {'member', string.sub(full, #sp + 1), p}
    end
  end
end
for _, full in ipairs(doomed) do redis.call('DEL', full) end
return {'ok', #doomed}
"""
)

# Claimed dispatches whose run has not arrived after ARGV[1] ms: returns their
# entries (JSON) and re-stamps them, so a crashed recoverer's work is retried
# later; entries whose signature moved on or vanished are dropped.
# KEYS: pending index. ARGV: age ms, limit
RECOVER: Final = (
    _PRELUDE
    + """
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, k in ipairs(due) do
  local keep = false
  if kind_of(k) then
    local f = redis.call('HMGET', k, 'ce', 'd', 's')
    if f[1] and (f[3] == 'pending' or f[3] == 'suspended' or f[3] == 'interrupted') then
      local e = cjson.decode(f[1])
      if e['did'] == f[2] then
        keep = true
        table.insert(out, f[1])
      end
    end
    if not keep then redis.call('HDEL', k, 'ce') end
  end
  if keep then redis.call('ZADD', KEYS[1], now, k) else redis.call('ZREM', KEYS[1], k) end
end
return out
"""
)

# KEYS: sig, lock. ARGV: token, lock ttl
LOCK: Final = (
    _PRELUDE
    + """
local bad = check(KEYS[1]); if bad then return bad end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'ok', redis.call('HGETALL', KEYS[1])} end
return {'busy'}
"""
)

# KEYS: lock. ARGV: token
UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lock. ARGV: token, ttl ms. Extends the lock only while this holder still owns it.
RENEW_LOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
