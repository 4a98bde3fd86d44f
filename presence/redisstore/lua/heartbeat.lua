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
-- Reaping emits an offline event for every user it takes to 0.
--
-- Returns {online users, 1 when registered and current (0 when not
-- registered, 2 when its sequence differs), then for each
-- node reaped: node id, users in its share, connections in its share}.
-- The reaping is done either way; the Go side turns "not registered or
-- sequence differs" into RESYNC (a script error would lose what it reaped).

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
local reaped = {}
for _, n in ipairs(dead) do
  local users, conns = drop_node(prefix, n, now)
  reaped[#reaped + 1] = n
  reaped[#reaped + 1] = users
  reaped[#reaped + 1] = conns
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

local status = 1
if not registered then
  status = 0
elseif not current then
  status = 2
end
local out = {online, status}
for _, v in ipairs(reaped) do
  out[#out + 1] = v
end
return out
