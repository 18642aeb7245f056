"""Every Redis key name, hash field, TTL conversion and Lua script of the store.

Layout (``P`` is the configured prefix, default ``mageflow:``)::

    P sig:<key>     hash    one signature (fields below)
    P lock:<key>    string  lock_task token, with its own expiry

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
"""

# KEYS: sig, required keys... ARGV: active_ttl, field, value, ...
CREATE: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
if redis.call('EXISTS', k) == 1 then return {'exists'} end
for i = 2, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {'missing', KEYS[i]} end
  if ok == false then return {'corrupt', KEYS[i]} end
end
redis.call('HSET', k, unpack(ARGV, 2))
redis.call('PEXPIRE', k, ARGV[1])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1], 'GT') end
return {'ok'}
"""
)

# KEYS: sig, lock. ARGV: token, input, dispatch id, active_ttl
DISPATCH: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[1]) then return {'locked'} end
local s = redis.call('HGET', k, 's')
if s == 'pending' then
  redis.call('HSET', k, 'm', ARGV[2], 'd', ARGV[3])
  redis.call('HDEL', k, 'r', 'pm')
  redis.call('PEXPIRE', k, ARGV[4])
  return {'dispatch'}
elseif s == 'suspended' then
  redis.call('HSET', k, 'm', ARGV[2], 'pm', ARGV[2], 'd', ARGV[3])
  redis.call('PEXPIRE', k, ARGV[4])
  return {'parked'}
end
return {'invalid', s}
"""
)

# A run arrives at a worker. KEYS: sig, lock. ARGV: dispatch id, run id, input, active_ttl
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
  redis.call('HSET', k, 'pm', ARGV[3], 'd', did)
  redis.call('PEXPIRE', k, ARGV[4])
  return {'park'}
elseif s == 'done' or s == 'failed' then
  local f = redis.call('HMGET', k, 'ob', 'res', 'm')
  if f[1] and r == run then
    return {'drain', s, f[1], (s == 'done' and f[2]) or f[3] or 'null'}
  end
  return {'skip', 'finished'}
end
return {'skip', s}
"""
)

# The last attempt of a run ended. Claims the callbacks of the outcome (sets
# their dispatch id) and records them as an outbox in the same step, so a
# crash before they are dispatched is repaired by the run's redelivery.
# KEYS: sig, lock. ARGV: outcome (succeed|fail), run id, payload, done_ttl,
# active_ttl, key prefix of signatures
FINISH: Final = (
    _PRELUDE
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], '') then return {'locked'} end
local st = redis.call('HMGET', k, 's', 'r', 'ob')
local s, r, ob = st[1], st[2], st[3]
local succeed = ARGV[1] == 'succeed'
local target = succeed and 'done' or 'failed'
if s == target then
  if ob and r == ARGV[2] then return {'already', ob} end
  return {'already', '[]'}
end
if s ~= 'active' and s ~= 'suspended' then return {'invalid', s} end
if r ~= ARGV[2] then return {'stale', s} end
local cbs = cjson.decode(redis.call('HGET', k, succeed and 'sc' or 'ec') or '[]')
local out = {}
for i, ck in ipairs(cbs) do
  local full = ARGV[6] .. ck
  if kind_of(full) then
    local cs = redis.call('HGET', full, 's')
    if cs == 'pending' or cs == 'suspended' then
      local did = ARGV[2] .. ':' .. string.sub(ARGV[1], 1, 1) .. i
      redis.call('HSET', full, 'd', did)
      redis.call('PEXPIRE', full, ARGV[5], 'GT')
      local h = redis.call('HGETALL', full)
      local kw = {}
      local entry = {key = ck, did = did, kw = kw}
      for j = 1, #h, 2 do
        local f = h[j]
        if string.sub(f, 1, 2) == 'k:' then kw[string.sub(f, 3)] = h[j + 1]
        elseif f == 't' then entry.t = h[j + 1]
        elseif f == 'mv' then entry.mv = h[j + 1]
        elseif f == 'kind' then entry.kind = h[j + 1] end
      end
      table.insert(out, entry)
    end
  end
end
local obj = '[]'
if #out > 0 then obj = cjson.encode(out) end
redis.call('HSET', k, 's', target, 'ls', s, 'ob', obj, succeed and 'res' or 'err', ARGV[3])
redis.call('HDEL', k, 'pm')
redis.call('PEXPIRE', k, ARGV[4])
return {'ok', obj}
"""
)

# A lifecycle event from a user call. KEYS: sig, lock. ARGV: event, token,
# active_ttl, done_ttl, new dispatch id
TRANSITION: Final = (
    _PRELUDE
    + "local T = "
    + _lua_transition_table()
    + """
local k = KEYS[1]
local bad = check(k); if bad then return bad end
if locked(KEYS[2], ARGV[2]) then return {'locked'} end
local st = redis.call('HMGET', k, 's', 'ls', 'pm', 'm', 'r')
local s, ls, pm, m, r = st[1], st[2], st[3], st[4], st[5]
local ev = ARGV[1]
local target = T[s .. '|' .. ev]
if not target then return {'invalid', s} end
if target == 'previous' then target = ls or 'pending' end
local replay = false
local run = ''
if ev == 'resume' then
  if (s == 'suspended' or s == 'pending') and pm then replay = pm
  elseif s == 'interrupted' and m then replay = m end
  if replay then
    target = 'pending'
    redis.call('HSET', k, 'pm', replay, 'd', ARGV[5])
    redis.call('HDEL', k, 'r')
  end
elseif ev == 'interrupt' and r then
  run = r
end
if target == s and not replay then
  slide(k, s, ARGV[3], ARGV[4])
  return {'noop', s, ls or '', run}
end
if target ~= s then redis.call('HSET', k, 's', target, 'ls', s) end
slide(k, target, ARGV[3], ARGV[4])
if replay then return {'replay', target, s, replay, ARGV[5]} end
return {'ok', target, s, run}
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
local function extend(field, first, last)
  if last < first then return end
  local raw = redis.call('HGET', k, field)
  local cur = {}
  if raw and raw ~= '[]' then cur = cjson.decode(raw) end
  local seen = {}
  for _, v in ipairs(cur) do seen[v] = true end
  for i = first, last do
    if not seen[ARGV[i]] then table.insert(cur, ARGV[i]); seen[ARGV[i]] = true end
  end
  redis.call('HSET', k, field, cjson.encode(cur))
end
local n_ok = tonumber(ARGV[3])
extend('sc', 4, 3 + n_ok)
extend('ec', 4 + n_ok, #ARGV)
redis.call('PEXPIRE', k, ARGV[2])
for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT') end
return {'ok'}
"""
)

# Deletes a signature and, recursively, the callbacks chosen. Nothing is
# deleted when any of them is locked by someone else or is foreign data.
# KEYS: sig. ARGV: token, with_error (0/1), with_success (0/1), sig prefix, lock prefix
REMOVE: Final = (
    _PRELUDE
    + """
local root = KEYS[1]
local ok = kind_of(root)
if ok == nil then return {'ok', 0} end
if ok == false then return {'corrupt'} end
local sp, lp = ARGV[4], ARGV[5]
local todo = {string.sub(root, #sp + 1)}
local seen = {}
local doomed = {}
while #todo > 0 do
  local key = table.remove(todo)
  if not seen[key] then
    seen[key] = true
    local full = sp .. key
    if kind_of(full) then
      if locked(lp .. key, ARGV[1]) then return {'locked', key} end
      table.insert(doomed, full)
      local f = redis.call('HMGET', full, 'sc', 'ec', 'x:tasks')
      local lists = {}
      if ARGV[3] == '1' and f[1] then table.insert(lists, f[1]) end
      if ARGV[2] == '1' and f[2] then table.insert(lists, f[2]) end
      if f[3] then table.insert(lists, f[3]) end
      for _, raw in ipairs(lists) do
        if raw ~= '[]' and raw ~= '{}' then
          for _, child in ipairs(cjson.decode(raw)) do table.insert(todo, child) end
        end
      end
    end
  end
end
for _, full in ipairs(doomed) do redis.call('DEL', full) end
return {'ok', #doomed}
"""
)

# KEYS: sig, lock. ARGV: token, lock ttl
LOCK: Final = (
    _PRELUDE
    + """
local bad = check(KEYS[1]); if bad then return bad end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'ok'} end
return {'busy'}
"""
)

# KEYS: lock. ARGV: token
UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
