-- The engine accepted dispatches: keep each run's id with its claim (when
-- its claim is still open), so the reconciler can ask the
-- engine about it. One call for a whole outbox.
-- KEYS: sig_keys...
-- ARGV: dispatch_and_run_ids...
-- REPLIES: ok
local n = 0
for i = KEYS_REST, #KEYS do
  local j = ARGV_REST + 2 * (i - KEYS_REST)
  -- only an open claim: a run that began (or a signature that moved on) has
  -- its own record, and a repeat of a finished dispatch changes nothing
  local f = redis.pcall('HMGET', KEYS[i], F.dispatch, F.claim)
  if type(f) == 'table' and f[1] == ARGV[j] and f[2] then
    redis.call('HSET', KEYS[i], F.engine_run, ARGV[j + 1])
    n = n + 1
  end
end
return {R.ok, n}
