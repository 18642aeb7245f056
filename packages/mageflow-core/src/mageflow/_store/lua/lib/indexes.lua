-- Query indexes (sorted sets, see keys.py) and status notifications. Every
-- status write (from step()) is followed by track(): the status index follows
-- it, and whoever waits for the signature (mageflow.result) is told on its
-- channel.
-- Each index write trims the entries older than its TTL, so an index never
-- lists a signature for longer than the signature can live.
-- @include lib/prelude
local function index_add(z, now, member, ttl)
  redis.call('ZADD', z, now, member)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - tonumber(ttl))
  redis.call('PEXPIRE', z, ttl)
end
-- an identifier value in an index name: a string as is, anything else as JSON
local function ident_text(v)
  if type(v) == 'string' then return v end
  return cjson.encode(v)
end
local function track(pfx, k, old, new, ttl)
  local sk = string.sub(k, #pfx + #K.sig + 1)
  if old and old ~= new then redis.call('ZREM', pfx .. K.by_status .. old, sk) end
  index_add(pfx .. K.by_status .. new, now_ms(), sk, ttl)
  redis.call('PUBLISH', pfx .. K.events .. sk, new)
  -- Payloads stored by reference (blob:<key>) go with their signature: it
  -- ends, and they live as long as it does (ttl: done_ttl), or it is retried,
  -- and they live as long as it may run again. A container's member or step
  -- keeps them as written (active_ttl): its container's results hash and
  -- later steps refer to them until the container itself ends.
  if terminal(new) ~= terminal(old) and redis.call('HEXISTS', k, F.parent) == 0 then
    redis.call('PEXPIRE', pfx .. K.blob .. sk, ttl)
  end
end
-- members and callbacks are part of another flow, not roots of their own
local function not_root(pfx, mk)
  redis.call('ZREM', pfx .. K.roots, mk)
end
-- KEYS[from..] (callbacks, members) are now referred to by another
-- signature: they live at least as long as it and are no roots of their own
local function adopt(pfx, from, ttl)
  local sp = pfx .. K.sig
  for i = from, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ttl, 'GT')
    not_root(pfx, string.sub(KEYS[i], #sp + 1))
  end
end
local function list_field(full, field)
  local raw = redis.call('HGET', full, field)
  if not raw or raw == '[]' or raw == '{}' then return {} end
  return cjson.decode(raw)
end
-- What a skip (or the retry that undoes it) reaches from signature `sk`:
-- its callbacks ({key, true}: each counts `sk` in its refs) and a
-- container's steps or members ({key, false}), pushed onto `todo`.
local function reached(todo, pfx, sk, kind)
  local full = pfx .. K.sig .. sk
  for _, f in ipairs({F.callbacks_ok, F.callbacks_err}) do
    for _, k in ipairs(list_field(full, f)) do table.insert(todo, {k, true}) end
  end
  if kind == KIND.chain then
    for _, k in ipairs(list_field(full, F.chain_tasks)) do table.insert(todo, {k, false}) end
  elseif kind == KIND.swarm then
    for _, k in ipairs(redis.call('LRANGE', pfx .. K.swarm .. sk .. K.members, 0, -1)) do
      table.insert(todo, {k, false})
    end
  end
end
-- a signature about to be deleted leaves every index it is listed in
local function unindex(pfx, k)
  local sk = string.sub(k, #pfx + #K.sig + 1)
  local f = redis.call('HMGET', k, F.status, F.task, F.ident)
  if f[1] then redis.call('ZREM', pfx .. K.by_status .. f[1], sk) end
  if f[2] then redis.call('ZREM', pfx .. K.by_task .. f[2], sk) end
  not_root(pfx, sk)
  if f[3] then
    for name, v in pairs(cjson.decode(f[3])) do
      redis.call('ZREM', pfx .. K.by_identifier .. name .. '=' .. ident_text(v), sk)
    end
  end
end
