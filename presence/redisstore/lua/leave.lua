-- leave.lua: removes a node's share and lease (clean shutdown).
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the leaving process's lease token: the share is kept when
--         another process owns the node id now
--
-- Emits an offline event for every user it takes to 0. Returns the
-- number of online users.

local now = now_ms()
local held = redis.call('HGET', KEYS[5], ARGV[2])
if not held or lease_owner(held) == ARGV[3] then
  drop_node(ARGV[1], ARGV[2], now)
end
touch_epoch(now, 0)
return publish(ARGV[1], now)
