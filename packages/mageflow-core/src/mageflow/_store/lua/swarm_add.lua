-- Admit members into a swarm, storing the new ones in the same step, and
-- start as many as its concurrency allows. Everything is checked before the
-- first write, so a refusal (closed, full, locked, a member taken or missing)
-- leaves nothing behind: no half-admitted swarm, no orphan member.
-- KEYS: sig_key, lock_key
-- ARGV: prefix, active_ttl, dispatch_prefix, token, count, groups, rest...
-- rest: `groups` field lists shared by new members (each its length, then
-- field, value pairs), then per member: its shape, its key, its own message
-- (JSON) or '', then the values the shape announces. The shape is `g` (a new
-- signature made of group g's fields), `0` (a stored signature) or `g,n,c`:
-- n own field, value pairs follow (group 0 here: a whole new signature,
-- indexed on its own), then c callback keys that must be stored.
-- REPLIES: ok
-- @include lib/containers
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local key = string.sub(sig_key, #SP + 1)
local f = redis.call('HMGET', sig_key, F.status, F.swarm_closed, F.swarm_config, F.admitted, F.kind)
if f[5] ~= KIND.swarm then return {R.notswarm} end
if f[2] == 'true' or terminal(f[1]) then return {R.closed, f[1]} end
local cfg = cjson.decode(f[3])
local n0 = tonumber(f[4] or '0')
local cnt = tonumber(count)
local lim = cfg['max_task_allowed']
if type(lim) == 'number' and n0 + cnt > lim then return {R.full, tostring(n0), tostring(lim), count} end
-- shared field lists: where each starts and ends in ARGV
local at = ARGV_REST
local gfirst, glast = {}, {}
for g = 1, tonumber(groups) do
  gfirst[g] = at + 1
  glast[g] = at + tonumber(ARGV[at])
  at = glast[g] + 1
end
-- every member is checked before anything is written
local mg, mn, mc, mat = {}, {}, {}, {}
local seen = {}
for i = 1, cnt do
  local shape = ARGV[at]
  local g, n, c = tonumber(shape), 0, 0
  if not g then
    local a, b, d = string.match(shape, '^(%d+),(%d+),(%d+)$')
    g, n, c = tonumber(a), tonumber(b), tonumber(d)
  end
  local mk = ARGV[at + 1]
  if seen[mk] or mk == key then return {R.taken, mk} end
  seen[mk] = true
  if g == 0 and n == 0 then
    local ok = kind_of(SP .. mk)
    if ok == nil then return {R.missing, mk} end
    if ok == false then return {R.corrupt, mk} end
    if redis.call('HEXISTS', SP .. mk, F.parent) == 1 then return {R.taken, mk} end
  else
    if redis.call('EXISTS', SP .. mk) == 1 then return {R.exists, mk} end
    for j = at + 3 + 2 * n, at + 2 + 2 * n + c do
      local ok = kind_of(SP .. ARGV[j])
      if ok == nil then return {R.missing, ARGV[j]} end
      if ok == false then return {R.corrupt, ARGV[j]} end
    end
  end
  mg[i], mn[i], mc[i], mat[i] = g, n, c, at
  at = at + 3 + 2 * n + c
end
-- the index entries of a new signature: by status, by task and by identifier
local function index_names(first, last)
  local st, task, ident
  for j = first, last, 2 do
    local name = ARGV[j]
    if name == F.status then st = ARGV[j + 1]
    elseif name == F.task then task = ARGV[j + 1]
    elseif name == F.ident then ident = ARGV[j + 1] end
  end
  local zs = {prefix .. K.by_status .. st, prefix .. K.by_task .. task}
  if ident then
    for name, v in pairs(cjson.decode(ident)) do
      zs[#zs + 1] = prefix .. K.by_identifier .. name .. '=' .. ident_text(v)
    end
  end
  return zs
end
local now = now_ms()
local ttl = tonumber(active_ttl)
local scored = {}  -- index name -> now, key, now, key ...
local zorder = {}
local function listed(z, mk)
  local s = scored[z]
  if not s then s = {}; scored[z] = s; zorder[#zorder + 1] = z end
  s[#s + 1] = now
  s[#s + 1] = mk
end
local gindex = {}
local buf = {}
local keys = {}
for i = 1, cnt do
  local g, n, c, a = mg[i], mn[i], mc[i], mat[i]
  local mk, msg = ARGV[a + 1], ARGV[a + 2]
  local full = SP .. mk
  keys[i] = mk
  local len = 0
  if g > 0 then
    for j = gfirst[g], glast[g] do len = len + 1; buf[len] = ARGV[j] end
  end
  for j = a + 3, a + 2 + 2 * n do len = len + 1; buf[len] = ARGV[j] end
  buf[len + 1], buf[len + 2], buf[len + 3], buf[len + 4] = F.parent, key, F.parent_index, n0 + i - 1
  len = len + 4
  if msg ~= '' then buf[len + 1], buf[len + 2] = F.member_message, msg; len = len + 2 end
  redis.call('HSET', full, unpack(buf, 1, len))
  if g == 0 and n == 0 then
    -- a stored signature: it was a root until now, and it lives at least as long as the swarm
    redis.call('PEXPIRE', full, ttl, 'GT')
    not_root(prefix, mk)
  else
    redis.call('PEXPIRE', full, ttl)
    local zs
    if g > 0 then
      zs = gindex[g]
      if not zs then zs = index_names(gfirst[g], glast[g]); gindex[g] = zs end
    else
      zs = index_names(a + 3, a + 2 + 2 * n)
    end
    for _, z in ipairs(zs) do listed(z, mk) end
    -- as create.lua: one more unsettled parent holds each of its callbacks
    local counted = {}
    for j = a + 3 + 2 * n, a + 2 + 2 * n + c do
      local ck = ARGV[j]
      if not counted[ck] then
        counted[ck] = true
        redis.call('HINCRBY', SP .. ck, F.refs, 1)
        redis.call('PEXPIRE', SP .. ck, ttl, 'GT')
        not_root(prefix, ck)
      end
    end
  end
end
for _, z in ipairs(zorder) do
  local s = scored[z]
  for j = 1, #s, 7000 do
    redis.call('ZADD', z, unpack(s, j, math.min(j + 6999, #s)))
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - ttl)
  redis.call('PEXPIRE', z, ttl)
end
for _, sfx in ipairs({K.members, K.queue}) do
  local l = XP .. key .. sfx
  for j = 1, cnt, 7000 do
    redis.call('RPUSH', l, unpack(keys, j, math.min(j + 6999, cnt)))
  end
  redis.call('PEXPIRE', l, ttl)
end
redis.call('HSET', sig_key, F.admitted, n0 + cnt)
local out = {}
swarm_fill(key, sig_key, out)
redis.call('PEXPIRE', sig_key, ttl, 'GT')
return {R.ok, encode(out)}
