-- Store many new signatures at once (mageflow.asign_many): all of them or,
-- when one key is taken or a required key is missing, none.
-- KEYS: required...
-- ARGV: prefix, active_ttl, count, shared, sigs...
-- sigs: the `shared` hash values every signature gets (field, value pairs),
-- then per signature its key, its number of own values n and those n values
-- REPLIES: ok
-- @include lib/indexes
local SP = prefix .. K.sig
for i = KEYS_REST, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {R.missing, KEYS[i]} end
  if ok == false then return {R.corrupt, KEYS[i]} end
end
local cnt = tonumber(count)
local first = ARGV_REST + tonumber(shared)
local at = first
local starts = {}
for i = 1, cnt do
  if redis.call('EXISTS', SP .. ARGV[at]) == 1 then return {R.exists, ARGV[at]} end
  starts[i] = at
  at = at + 2 + tonumber(ARGV[at + 1])
end
for i = 1, cnt do
  local s = starts[i]
  local full = SP .. ARGV[s]
  redis.call('HSET', full, unpack(ARGV, ARGV_REST, first - 1))
  local n = tonumber(ARGV[s + 1])
  if n > 0 then redis.call('HSET', full, unpack(ARGV, s + 2, s + 1 + n)) end
  redis.call('PEXPIRE', full, active_ttl)
end
-- the query indexes, as create.lua keeps them: the signatures share their
-- status, task and identifiers, so one ZADD per index takes the whole batch
if cnt > 0 then
  local now = now_ms()
  local f = redis.call('HMGET', SP .. ARGV[starts[1]], F.status, F.task, F.ident)
  local zs = {prefix .. K.by_status .. f[1], prefix .. K.by_task .. f[2], prefix .. K.roots}
  if f[3] then
    for name, v in pairs(cjson.decode(f[3])) do
      zs[#zs + 1] = prefix .. K.by_identifier .. name .. '=' .. ident_text(v)
    end
  end
  local scored = {}
  for i = 1, cnt do
    scored[#scored + 1] = now
    scored[#scored + 1] = ARGV[starts[i]]
  end
  for _, z in ipairs(zs) do
    for j = 1, #scored, 7000 do
      redis.call('ZADD', z, unpack(scored, j, math.min(j + 6999, #scored)))
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - tonumber(active_ttl))
    redis.call('PEXPIRE', z, active_ttl)
  end
end
adopt(prefix, KEYS_REST, active_ttl)
-- as create.lua: every new signature is one more unsettled parent of each
-- shared callback (FINISH skips a callback only when its count reaches 0)
if cnt > 0 then
  local counted = {}
  for i = KEYS_REST, #KEYS do
    if not counted[KEYS[i]] then
      counted[KEYS[i]] = true
      redis.call('HINCRBY', KEYS[i], F.refs, cnt)
    end
  end
end
return {R.ok}
