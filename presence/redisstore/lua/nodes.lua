-- nodes.lua: lists registered nodes with their leases and load figures.
--
-- KEYS: as in lib.lua (only KEYS[1] is read).
-- ARGV[1] key prefix
--
-- Returns {now ms, node id, lease expiry ms, load JSON or false, ...}.

local out = {now_ms()}
local nodes = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #nodes, 2 do
  out[#out + 1] = nodes[i]
  out[#out + 1] = nodes[i + 1]
  out[#out + 1] = redis.call('GET', ARGV[1] .. ':nodeinfo:' .. nodes[i])
end
return out
