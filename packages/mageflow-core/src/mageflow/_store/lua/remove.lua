-- Delete a signature and, recursively, its members and the callbacks chosen.
-- Nothing is deleted when any of them is locked by someone else or is
-- foreign data, or when a member would be removed while its container runs.
-- KEYS: sig_key
-- ARGV: held, with_error, with_success, prefix
-- held: the caller's lock tokens (JSON object key -> token)
-- REPLIES: ok
-- @include lib/indexes
local ok = kind_of(sig_key)
if ok == nil then return {R.ok, 0} end
if ok == false then return {R.corrupt} end
local sp, lp, xp = prefix .. K.sig, prefix .. K.lock, prefix .. K.swarm
-- the caller's lock tokens by key: a holder of a container holds its members too
local tokens = cjson.decode(held)
local todo = {string.sub(sig_key, #sp + 1)}
local seen = {}
local doomed = {}
while #todo > 0 do
  local key = table.remove(todo)
  if not seen[key] then
    seen[key] = true
    local full = sp .. key
    if kind_of(full) then
      if locked(lp .. key, tokens[key] or '') then return {R.locked, key} end
      table.insert(doomed, full)
      local f = redis.call('HMGET', full, F.callbacks_ok, F.callbacks_err, F.chain_tasks, F.kind)
      local lists = {}
      if with_success == '1' and f[1] then table.insert(lists, f[1]) end
      if with_error == '1' and f[2] then table.insert(lists, f[2]) end
      if f[3] then table.insert(lists, f[3]) end
      for _, raw in ipairs(lists) do
        if raw ~= '[]' and raw ~= '{}' then
          for _, child in ipairs(cjson.decode(raw)) do table.insert(todo, child) end
        end
      end
      if f[4] == KIND.swarm then
        local base = xp .. key
        for _, child in ipairs(redis.call('LRANGE', base .. K.members, 0, -1)) do table.insert(todo, child) end
        for _, sfx in ipairs({K.members, K.queue, K.results, K.busy}) do table.insert(doomed, base .. sfx) end
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
    local p = redis.call('HGET', full, F.parent)
    if p and not gone[sp .. p] and kind_of(sp .. p) and not terminal(redis.call('HGET', sp .. p, F.status)) then
      return {R.member, string.sub(full, #sp + 1), p}
    end
  end
end
-- a callback that stays loses a parent: an unsettled one counted itself in
-- its refs (create.lua), so the count goes back to what it was before
for _, full in ipairs(doomed) do
  if string.sub(full, 1, #sp) == sp and kind_of(full) then
    local f = redis.call('HMGET', full, F.status, F.callbacks_ok, F.callbacks_err)
    if not terminal(f[1]) then
      local counted = {}
      for _, raw in ipairs({f[2], f[3]}) do
        if raw and raw ~= '[]' and raw ~= '{}' then
          for _, ck in ipairs(cjson.decode(raw)) do
            local cf = sp .. ck
            if not counted[ck] and not gone[cf] and kind_of(cf) then
              counted[ck] = true
              if redis.call('HINCRBY', cf, F.refs, -1) <= 0 then redis.call('HDEL', cf, F.refs) end
            end
          end
        end
      end
    end
  end
end
-- a deleted signature leaves every index with it (the reconciler's too)
local pk, ak = prefix .. K.pending, prefix .. K.active
for _, full in ipairs(doomed) do
  if string.sub(full, 1, #sp) == sp then
    unindex(prefix, full)
    redis.call('ZREM', pk, full)
    redis.call('ZREM', ak, full)
    -- payloads stored by reference go with their signature
    redis.call('DEL', prefix .. K.blob .. string.sub(full, #sp + 1))
  end
  redis.call('DEL', full)
end
return {R.ok, #doomed}
