-- Store a new signature. Every key after sig_key must exist; the first
-- `members` of them (chain steps) become its members in the same step.
-- KEYS: sig_key, required...
-- ARGV: active_ttl, members, own_key, prefix, fields...
-- REPLIES: ok
-- @include lib/indexes
if redis.call('EXISTS', sig_key) == 1 then return {R.exists} end
local last_member = KEYS_REST + tonumber(members) - 1
local seen = {}
for i = KEYS_REST, last_member do
  if seen[KEYS[i]] then return {R.taken, KEYS[i]} end
  seen[KEYS[i]] = true
end
for i = KEYS_REST, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {R.missing, KEYS[i]} end
  if ok == false then return {R.corrupt, KEYS[i]} end
  if i <= last_member and redis.call('HEXISTS', KEYS[i], F.parent) == 1 then
    return {R.taken, KEYS[i]}
  end
end
redis.call('HSET', sig_key, unpack(ARGV, ARGV_REST))
redis.call('PEXPIRE', sig_key, active_ttl)
local now = now_ms()
local f = redis.call('HMGET', sig_key, F.status, F.task, F.ident)
index_add(prefix .. K.by_status .. f[1], now, own_key, active_ttl)
index_add(prefix .. K.by_task .. f[2], now, own_key, active_ttl)
index_add(prefix .. K.roots, now, own_key, active_ttl)
if f[3] then
  for name, v in pairs(cjson.decode(f[3])) do
    index_add(prefix .. K.by_identifier .. name .. '=' .. ident_text(v), now, own_key, active_ttl)
  end
end
local sp = prefix .. K.sig
local counted = {}
for i = KEYS_REST, #KEYS do
  if i <= last_member then redis.call('HSET', KEYS[i], F.parent, own_key, F.parent_index, i - KEYS_REST)
  elseif not counted[KEYS[i]] then
    -- one more unsettled parent holds this callback (FINISH skips it at 0)
    counted[KEYS[i]] = true
    redis.call('HINCRBY', KEYS[i], F.refs, 1)
  end
  redis.call('PEXPIRE', KEYS[i], active_ttl, 'GT')
  not_root(prefix, string.sub(KEYS[i], #sp + 1))
end
return {R.ok}
