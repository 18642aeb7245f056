-- Helpers every script may use. kind_of() tells a signature hash from a
-- missing key (nil) and from foreign data (false), so no script ever writes
-- over data it does not own.
local function kind_of(k)
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then return nil end
  if t ~= 'hash' or redis.call('HGET', k, F.version) ~= SCHEMA_VERSION then return false end
  return true
end
local function check(k)
  local ok = kind_of(k)
  if ok == nil then return {R.missing} end
  if ok == false then return {R.corrupt} end
  return nil
end
-- Engine run ids of dispatches sent earlier: KEYS from index ki on, each
-- with a (dispatch id, run id) pair in ARGV from index ai on. The id is kept
-- with its claim while that claim is open, so the reconciler can ask the
-- engine about the run; a run that began, or a signature that moved on, has
-- its own record and nothing is written. Returns how many were kept.
local function record_sent(ki, ai)
  local n = 0
  for i = ki, #KEYS do
    local j = ai + 2 * (i - ki)
    local f = redis.pcall('HMGET', KEYS[i], F.dispatch, F.claim)
    if type(f) == 'table' and f[1] == ARGV[j] and f[2] then
      redis.call('HSET', KEYS[i], F.engine_run, ARGV[j + 1])
      n = n + 1
    end
  end
  return n
end
local function locked(lk, holder)
  local h = redis.call('GET', lk)
  return h and h ~= holder
end
local function terminal(s)
  return TERMINAL[s] == true
end
-- The status event `ev` leads to from `s`, nil when the table forbids it.
-- Every status a script writes comes from here: the generated table T is the
-- one source of the lifecycle (thirdmagic.status.TRANSITIONS).
local function step(s, ev, previous)
  if not s then return nil end
  local cell = T[s .. '|' .. ev]
  if cell == PREVIOUS then return previous or S.pending end
  return cell
end
local function slide(k, s, active_ms, done_ms)
  if terminal(s) then redis.call('PEXPIRE', k, done_ms) else redis.call('PEXPIRE', k, active_ms) end
end
-- The pending index: every claimed dispatch is listed (scored by claim time)
-- with its entry on the signature (F.claim) until its run arrives, so a
-- dispatch lost to a crash or an engine error is found and sent again by
-- recover().
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pend(pk, k, entry)
  redis.call('ZADD', pk, now_ms(), k)
  redis.call('HSET', k, F.claim, entry)
  -- a new dispatch: the engine's run id, the re-send count and the doubt
  -- about its run belong to the old one
  redis.call('HDEL', k, F.engine_run, F.resends, F.unknown_since)
end
local function unpend(pk, k)
  redis.call('ZREM', pk, k)
  redis.call('HDEL', k, F.claim)
end
-- A dispatch entry: everything needed to send one run (codec.E names the
-- fields; "kw"/"pkw" are the signature's own and its containers' kwargs,
-- "mode" says how the value "v" reaches it).
local function entry(sk, did, task, model, kind, kw, pkw, how, v)
  return {[E.key] = sk, [E.dispatch] = did, [E.task] = task, [E.model] = model,
          [E.kind] = kind, [E.kwargs] = kw, [E.inherited] = pkw, [E.mode] = how, [E.value] = v}
end
