-- Close a swarm to new members; settles it when nothing is left to run.
-- KEYS: sig_key, lock_key
-- ARGV: prefix, active_ttl, dispatch_prefix, done_ttl, token
-- REPLIES: ok
-- @include lib/containers
local bad = check(sig_key); if bad then return bad end
if locked(lock_key, token) then return {R.locked} end
local key = string.sub(sig_key, #SP + 1)
if redis.call('HGET', sig_key, F.kind) ~= KIND.swarm then return {R.notswarm} end
redis.call('HSET', sig_key, F.swarm_closed, 'true')
local out = {}
local s = redis.call('HGET', sig_key, F.status)
if s == S.active then
  local o, v = swarm_outcome(key, sig_key)
  if o then
    conclude(sig_key, s, o, v, redis.call('HGET', sig_key, F.start_value), out)
  end
end
return {R.ok, encode(out)}
