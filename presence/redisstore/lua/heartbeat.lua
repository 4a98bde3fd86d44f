-- heartbeat.lua: renews a node's lease, stores its load figures and reaps
-- every node whose lease has expired.
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the node's current sequence (must match KEYS[5][node])
-- ARGV[4] lease length in ms
-- ARGV[5] the node's load figures (JSON)
-- ARGV[6] recovery window in ms (a heartbeat comes from a node that wrote
--         before, so an empty data set means Redis lost data)
--
-- Returns {online users, nodes reaped}, or the error "RESYNC ..." when the
-- node is not registered or its sequence differs; the reaping is done
-- either way.

local prefix, node = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[4])
local now = now_ms()

-- If no node wrote for a whole lease, Redis was unreachable (or every
-- node was down): leases ran out while nobody could renew them. Give
-- every registered node one lease to check in before reaping anyone.
local clock = tonumber(redis.call('HGET', KEYS[7], 'clock') or now)
if now - clock > ttl then
  local nodes = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, n in ipairs(nodes) do
    redis.call('ZADD', KEYS[1], 'GT', now + ttl, n)
  end
end
touch_epoch(now, tonumber(ARGV[6]))

local registered = redis.call('ZSCORE', KEYS[1], node)
local current = registered and redis.call('HGET', KEYS[5], node) == ARGV[3]
if current then
  redis.call('ZADD', KEYS[1], now + ttl, node)
  redis.call('SET', KEYS[9], ARGV[5], 'PX', ttl)
end

local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, n in ipairs(dead) do
  drop_node(prefix, n)
end
-- online_users is rewritten by every script that changes the sums; a
-- heartbeat changes them only when it reaps (or the key is gone), and
-- otherwise leaves the key alone.
local online
if #dead > 0 or redis.call('EXISTS', KEYS[6]) == 0 then
  online = publish(prefix, now)
else
  online = redis.call('HLEN', KEYS[2])
end
-- If every node dies, nobody is left to reap them: the count then
-- expires instead of claiming their users forever.
redis.call('PEXPIRE', KEYS[6], 2 * ttl)

if not registered then
  return redis.error_reply('RESYNC node not registered')
end
if not current then
  return redis.error_reply('RESYNC sequence mismatch')
end
return {online, #dead}
