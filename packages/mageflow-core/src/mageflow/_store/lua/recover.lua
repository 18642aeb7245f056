-- The reconciler's sweep: claims (pending index) and begun runs (active
-- index) not heard of for age_ms. Each item due is re-stamped, which leases
-- it to this caller for another age_ms, so a concurrent sweep does not take
-- it too (and a crashed reconciler's items come due again); items whose
-- signature moved on or vanished are dropped from their index, so settled
-- signatures cost nothing. One JSON record per item: k key, w 'c' (claim) or
-- 'a' (begun run), ce claim entry, er engine run id, ro run options, rn
-- re-sends so far, s status, ud 1 when the engine did not know its run at
-- an earlier look (settle.lua's doubt).
-- KEYS: pending_key, active_key
-- ARGV: age_ms, limit, sig_prefix
-- REPLIES: ok
-- @include lib/prelude
local now = now_ms()
local cut = now - tonumber(age_ms)
local cap = tonumber(limit)
local skip = #sig_prefix
local out = {R.ok}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', pending_key, '-inf', cut, 'LIMIT', 0, cap)) do
  local keep = false
  if kind_of(k) then
    local f = redis.call('HMGET', k, F.claim, F.dispatch, F.status, F.engine_run, F.run_options, F.resends,
                         F.run, F.unknown_since)
    -- an active signature with no run holds a claim too: a retry finish.lua
    -- made a new run of, because the engine had no attempt left
    if f[1] and (f[3] == S.pending or f[3] == S.suspended or f[3] == S.interrupted
                 or (f[3] == S.active and not f[7])) then
      local e = cjson.decode(f[1])
      if e[E.dispatch] == f[2] then
        keep = true
        table.insert(out, cjson.encode({k = string.sub(k, skip + 1), w = 'c', ce = f[1], er = f[4] or '',
                                        ro = f[5] or '', rn = tonumber(f[6] or '0'), s = f[3],
                                        ud = f[8] and 1 or 0}))
      end
    end
    if not keep then redis.call('HDEL', k, F.claim) end
  end
  if keep then redis.call('ZADD', pending_key, now, k) else redis.call('ZREM', pending_key, k) end
end
for _, k in ipairs(redis.call('ZRANGEBYSCORE', active_key, '-inf', cut, 'LIMIT', 0, cap)) do
  local keep = false
  if kind_of(k) then
    local f = redis.call('HMGET', k, F.status, F.run, F.resends, F.unknown_since)
    if f[2] and (f[1] == S.active or f[1] == S.suspended) then
      keep = true
      table.insert(out, cjson.encode({k = string.sub(k, skip + 1), w = 'a', er = f[2], s = f[1],
                                      rn = tonumber(f[3] or '0'), ud = f[4] and 1 or 0}))
    end
  end
  if keep then redis.call('ZADD', active_key, now, k) else redis.call('ZREM', active_key, k) end
end
return out
