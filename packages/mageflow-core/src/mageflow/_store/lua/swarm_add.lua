-- Add members to a swarm and start as many as its concurrency allows.
-- KEYS: sig_key, lock_key
-- ARGV: prefix, active_ttl, dispatch_prefix, token, count, members...
-- members: per member its key, then its own message (JSON) or ''
-- REPLIES: ok
-- @include lib/containers
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local key = string.sub(sig_key, #SP + 1)
local f = redis.call('HMGET', sig_key, F.status, F.swarm_closed, F.swarm_config, F.admitted, F.kind)
if f[5] ~= KIND.swarm then return {R.notswarm} end
if f[2] == 'true' or terminal(f[1]) then return {R.closed, f[1]} end
local cfg = cjson.decode(f[3])
local n = tonumber(f[4] or '0')
local cnt = tonumber(count)
local lim = cfg['max_task_allowed']
if type(lim) == 'number' and n + cnt > lim then return {R.full, tostring(n), tostring(lim), count} end
local seen = {}
for i = 1, cnt do
  local mk = ARGV[ARGV_REST + 2 * i - 2]
  local ok = kind_of(SP .. mk)
  if ok == nil then return {R.missing, mk} end
  if ok == false then return {R.corrupt, mk} end
  if seen[mk] or mk == key or redis.call('HEXISTS', SP .. mk, F.parent) == 1 then return {R.taken, mk} end
  seen[mk] = true
end
for i = 1, cnt do
  local mk = ARGV[ARGV_REST + 2 * i - 2]
  local msg = ARGV[ARGV_REST + 2 * i - 1]
  local mf = SP .. mk
  redis.call('HSET', mf, F.parent, key, F.parent_index, n + i - 1)
  if msg ~= '' then redis.call('HSET', mf, F.member_message, msg) end
  redis.call('PEXPIRE', mf, active_ttl, 'GT')
  redis.call('RPUSH', XP .. key .. K.members, mk)
  redis.call('RPUSH', XP .. key .. K.queue, mk)
  not_root(prefix, mk)
end
redis.call('HSET', sig_key, F.admitted, n + cnt)
for _, sfx in ipairs({K.members, K.queue}) do redis.call('PEXPIRE', XP .. key .. sfx, active_ttl) end
local out = {}
swarm_fill(key, sig_key, out)
redis.call('PEXPIRE', sig_key, active_ttl, 'GT')
return {R.ok, encode(out)}
