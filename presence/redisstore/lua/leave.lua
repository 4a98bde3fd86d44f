-- leave.lua: removes a node's share and lease (clean shutdown).
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
--
-- Emits an offline event for every user it takes to 0. Returns the
-- number of online users.

local now = now_ms()
drop_node(ARGV[1], ARGV[2], now)
touch_epoch(now, 0)
return publish(ARGV[1], now)
