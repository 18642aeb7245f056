-- Which of the given keys hold something: one character per key, 1 or 0.
-- Swarm admission tells stored members from task names and unsaved
-- signatures with it, without reading them (swarm_add.lua then checks that
-- each stored member is a signature).
-- KEYS: sigs...
-- ARGV:
-- REPLIES: ok
local out = {}
for i = KEYS_REST, #KEYS do
  out[i - KEYS_REST + 1] = redis.call('EXISTS', KEYS[i]) == 1 and '1' or '0'
end
return {R.ok, table.concat(out)}
