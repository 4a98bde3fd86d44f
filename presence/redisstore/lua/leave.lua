-- leave.lua: retires a node (clean shutdown): its lease and figures go at
-- once, its users are taken out of the sums BUDGET at a time, here and by
-- reap.lua.
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the leaving process's lease token: the share is kept when
--         another process owns the node id now
--
-- Emits an offline event for every user it takes to 0. Returns {online
-- users, 1 when reaps remain (else 0), then for each reap
-- finished: node id, users, connections}.

local now = now_ms()
local held = redis.call('HGET', KEYS[5], ARGV[2])
local retired = {}
if not held or lease_owner(held) == ARGV[3] then
  local id, users, conns = drop_node(ARGV[1], ARGV[2], now)
  if not id and held then
    retired = {ARGV[2], users, conns}
  end
end
touch_epoch(now)
local _, more, finished = reap_some(ARGV[1], BUDGET, now)
flush(now)
for _, v in ipairs(retired) do
  finished[#finished + 1] = v
end
local out = {publish(ARGV[1], now), more and 1 or 0}
for _, v in ipairs(finished) do
  out[#out + 1] = v
end
return out
