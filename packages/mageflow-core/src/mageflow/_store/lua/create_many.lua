-- Store many new signatures at once (mageflow.asign_many): all of them or,
-- when one key is taken or a required key is missing, none.
-- KEYS: required...
-- ARGV: prefix, active_ttl, count, shared, sigs...
-- sigs: the `shared` hash values every signature gets (field, value pairs),
-- then per signature its key, its number of own values n and those n values
-- REPLIES: ok
-- @include lib/prelude
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
for i = KEYS_REST, #KEYS do redis.call('PEXPIRE', KEYS[i], active_ttl, 'GT') end
return {R.ok}
