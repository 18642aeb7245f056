-- Append callback keys to a signature that has not finished; every callback
-- must be stored.
-- KEYS: sig_key, lock_key, callbacks...
-- ARGV: token, active_ttl, n_success, prefix, callback_keys...
-- callback_keys: the n_success success callbacks first, then the error ones
-- REPLIES: ok
-- @include lib/indexes
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local s = redis.call('HGET', sig_key, F.status)
if terminal(s) then return {R.invalid, s} end
for i = KEYS_REST, #KEYS do
  local ok = kind_of(KEYS[i])
  if ok == nil then return {R.missing, KEYS[i]} end
  if ok == false then return {R.corrupt, KEYS[i]} end
end
-- Both lists are merged before anything is written: a corrupted list is
-- reported and leaves the signature untouched (a script error would not
-- roll back an HSET already made).
local held = {}
local function merged(field, first, last)
  local raw = redis.call('HGET', sig_key, field)
  local cur = {}
  if raw and raw ~= '[]' and raw ~= '{}' then
    local ok, v = pcall(cjson.decode, raw)
    if not ok or type(v) ~= 'table' then return nil end
    cur = v
  end
  local seen = {}
  for _, v in ipairs(cur) do seen[v] = true; held[v] = true end
  if last < first then return false end
  for i = first, last do
    if not seen[ARGV[i]] then table.insert(cur, ARGV[i]); seen[ARGV[i]] = true end
  end
  return cjson.encode(cur)
end
local last_ok = ARGV_REST + tonumber(n_success) - 1
local before = {}
local sc = merged(F.callbacks_ok, ARGV_REST, last_ok)
local ec = merged(F.callbacks_err, last_ok + 1, #ARGV)
if sc == nil or ec == nil then return {R.corrupt} end
-- a callback this signature did not hold before has one more unsettled parent
-- (callbacks... and callback_keys... are in the same order)
for j = 0, #ARGV - ARGV_REST do
  local ck = ARGV[ARGV_REST + j]
  if not held[ck] and not before[ck] then
    before[ck] = true
    redis.call('HINCRBY', KEYS[KEYS_REST + j], F.refs, 1)
  end
end
if sc then redis.call('HSET', sig_key, F.callbacks_ok, sc) end
if ec then redis.call('HSET', sig_key, F.callbacks_err, ec) end
redis.call('PEXPIRE', sig_key, active_ttl)
adopt(prefix, KEYS_REST, active_ttl)
return {R.ok}
