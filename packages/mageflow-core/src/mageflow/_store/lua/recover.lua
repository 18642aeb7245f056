-- Claimed dispatches whose run has not arrived after age_ms: returns their
-- entries (JSON) and re-stamps them, so a crashed recoverer's work is retried
-- later; entries whose signature moved on or vanished are dropped.
-- KEYS: pending_key
-- ARGV: age_ms, limit
-- REPLIES: ok
-- @include lib/prelude
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', pending_key, '-inf', now - tonumber(age_ms),
                       'LIMIT', 0, tonumber(limit))
local out = {R.ok}
for _, k in ipairs(due) do
  local keep = false
  if kind_of(k) then
    local f = redis.call('HMGET', k, F.claim, F.dispatch, F.status)
    if f[1] and (f[3] == S.pending or f[3] == S.suspended or f[3] == S.interrupted) then
      local e = cjson.decode(f[1])
      if e[E.dispatch] == f[2] then
        keep = true
        table.insert(out, f[1])
      end
    end
    if not keep then redis.call('HDEL', k, F.claim) end
  end
  if keep then redis.call('ZADD', pending_key, now, k) else redis.call('ZREM', pending_key, k) end
end
return out
