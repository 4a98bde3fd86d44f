-- reap.lua: takes a bounded part of the shares being reaped (nodes that
-- died or left, see drop_node in lib.lua) out of the sums.
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id of the caller (unused)
--
-- Returns {online users, 1 when reaps remain (else 0), then for each reap
-- finished: node id, users in its share, connections in its share}.

local prefix = ARGV[1]
local now = now_ms()
local took, more, finished = reap_some(prefix, BUDGET, now)
flush(now)
local online
if took > 0 then
  online = publish(prefix, now)
else
  online = redis.call('HLEN', KEYS[2])
end
local out = {online, more and 1 or 0}
for _, v in ipairs(finished) do
  out[#out + 1] = v
end
return out
