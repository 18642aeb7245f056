-- The last attempt of a run ended. Claims what the outcome starts (callbacks,
-- the next chain step, queued swarm members, container callbacks) and records
-- it as an outbox on the finished signature in the same atomic step, so a
-- crash before the dispatches is repaired by the run's redelivery. The
-- dispatch ids it hands out start with the run id (dispatch_prefix).
-- KEYS: sig_key, lock_key
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, outcome, payload
-- REPLIES: ok, already, missing, stale, invalid
-- @include lib/containers
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, '') then return {R.locked} end
local run_id = dispatch_prefix
local st = redis.call('HMGET', sig_key, F.status, F.run, F.outbox, F.input)
local s, r, ob, m = st[1], st[2], st[3], st[4]
local succeed = outcome == EV.succeed
local target = step(s, succeed and EV.succeed or EV.fail)
if not target then return {R.invalid, s} end
if target == s then
  if ob and r == run_id then return {R.already, ob} end
  return {R.already, '[]'}
end
if r ~= run_id then return {R.stale, s} end
local out = {}
fire_cbs(sig_key, succeed, payload, m or '{}', out, (not succeed) and payload or nil)
redis.call('HSET', sig_key, F.status, target, F.last_status, s, succeed and F.result or F.error, payload)
track(prefix, sig_key, s, target, done_ttl)
redis.call('HDEL', sig_key, F.parked)
redis.call('PEXPIRE', sig_key, done_ttl)
bubble(string.sub(sig_key, #SP + 1), succeed, payload, m or '{}', out)
local obj = encode(out)
redis.call('HSET', sig_key, F.outbox, obj)
if #MISSING > 0 then return {R.ok, obj, cjson.encode(MISSING)} end
return {R.ok, obj}
