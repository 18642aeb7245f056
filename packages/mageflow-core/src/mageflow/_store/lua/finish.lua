-- An attempt of a run ended. A success, or a failure the caller calls final
-- (retries < 0), is the run's outcome. Any other failure is counted against
-- the task's retry budget (`retries`): MageFlow owns this count, so an
-- attempt the engine restarted after losing a worker never spends it. While
-- the budget lasts the reply is `retry`; when the engine will not retry the
-- run itself (redispatch == 1), the retry is claimed here as a new run of the
-- signature (an outbox of one entry, listed in the pending index). Once the
-- budget is spent the failure is the outcome.
-- Recording an outcome claims what it starts (callbacks, the next chain
-- step, queued swarm members, container callbacks) and records it as an
-- outbox on the finished signature in the same atomic step, so a crash
-- before the dispatches is repaired by the run's redelivery. The dispatch
-- ids it hands out start with the run id (dispatch_prefix).
-- Safe to repeat: an attempt that already counted its failure (`attempt`
-- equals F.failure_attempt) gets the same decision again.
-- Like BEGIN, it first records the engine run ids of earlier dispatches
-- (sent_keys, sent_runs).
-- KEYS: sig_key, lock_key, sent_keys...
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, outcome, payload, attempt, retries, redispatch, sent_runs...
-- REPLIES: ok, already, missing, stale, invalid, retry
-- @include lib/containers
record_sent(KEYS_REST, ARGV_REST)
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, '') then return {R.locked} end
local run_id = dispatch_prefix
local st = redis.call('HMGET', sig_key, F.status, F.run, F.outbox, F.input,
                      F.failures, F.failure_attempt, F.claim, F.task, F.model)
local s, r, ob, m = st[1], st[2], st[3], st[4]
local succeed = outcome == EV.succeed
local budget = tonumber(retries)
if not succeed and budget >= 0 and s and not terminal(s) then
  local n = tonumber(st[5]) or 0
  if st[6] == attempt then
    -- a repeat of this attempt's call: same decision, nothing counted twice
    if n <= budget then return {R.retry, (st[7] and r ~= run_id) and ('[' .. st[7] .. ']') or '[]'} end
  elseif r == run_id then
    n = n + 1
    redis.call('HSET', sig_key, F.failures, n, F.failure_attempt, attempt)
    if n <= budget then
      if redispatch ~= '1' then return {R.retry, '[]'} end
      local did = run_id .. ':r' .. n
      local e = entry(string.sub(sig_key, #SP + 1), did, st[8], st[9], KIND.task, {}, {},
                      MODE.merge, m or '{}')
      local raw = cjson.encode(e)
      -- the signature stays active with no run: BEGIN gives it to the run
      -- carrying this dispatch id
      redis.call('HSET', sig_key, F.dispatch, did)
      redis.call('HDEL', sig_key, F.run)
      redis.call('PEXPIRE', sig_key, active_ttl)
      -- no begun run until the new one arrives: its claim is what to watch
      redis.call('ZREM', prefix .. K.active, sig_key)
      pend(PENDING, sig_key, raw)
      return {R.retry, '[' .. raw .. ']'}
    end
  end
end
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
redis.call('ZREM', prefix .. K.active, sig_key)
redis.call('PEXPIRE', sig_key, done_ttl)
bubble(string.sub(sig_key, #SP + 1), succeed, payload, m or '{}', out)
local obj = encode(out)
redis.call('HSET', sig_key, F.outbox, obj)
if #MISSING > 0 then return {R.ok, obj, cjson.encode(MISSING)} end
return {R.ok, obj}
