-- lib.lua: helpers prepended to every presence script (not a script itself).
--
-- Every writing script gets the same KEYS, so that all keys are declared
-- and share one hash tag (Redis Cluster runs a script on one slot):
--   KEYS[1]  <prefix>:nodes     ZSET node -> lease expiry (ms, Redis clock)
--   KEYS[2]  <prefix>:users     HASH user -> connections on all live nodes
--   KEYS[3]  <prefix>:conns     HASH node -> connections on the node (guests included)
--   KEYS[4]  <prefix>:guests    HASH node -> guest connections on the node
--   KEYS[5]  <prefix>:seq       HASH node -> "<sequence>:<token>" of the node's last applied
--                               write; the token names the process that owns the lease
--   KEYS[6]  online_users       STRING number of online users (HLEN of KEYS[2]);
--                               expires 2 leases after the last heartbeat of any node
--   KEYS[7]  <prefix>:epoch     HASH created -> when this data set began (ms),
--                               clock -> last time any node wrote (ms),
--                               recovering -> until when (ms) nodes may still be
--                               rewriting shares that Redis lost
--   KEYS[8]  <prefix>:node:<id> HASH user -> connections on this node
--   KEYS[9]  <prefix>:nodeinfo:<id> STRING this node's load figures (JSON)
-- ARGV[1] is always the key prefix, used to name other nodes' keys when
-- reaping them; ARGV[2] is always this node's id.

local PEAK_TTL = 172800 -- peak-of-day keys live two days

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function peak_key(prefix, now)
  return prefix .. ':peak:' .. math.floor(now / 86400000)
end

-- touch_epoch records that a node wrote now. When the data set is new and
-- the writing node had written before (lost > 0: Redis lost its data),
-- it marks the data set as recovering for lost ms, so readers know that
-- other nodes may not have rewritten their shares yet.
local function touch_epoch(now, lost)
  local created = redis.call('HSETNX', KEYS[7], 'created', now) == 1
  redis.call('HSET', KEYS[7], 'clock', now)
  if created and lost > 0 then
    redis.call('HSET', KEYS[7], 'recovering', now + lost)
  end
  return created
end

-- drop_node subtracts a node's whole share from the cluster sums and
-- deletes its keys.
local function drop_node(prefix, node)
  local nk = prefix .. ':node:' .. node
  local share = redis.call('HGETALL', nk)
  for i = 1, #share, 2 do
    local left = redis.call('HINCRBY', KEYS[2], share[i], -tonumber(share[i + 1]))
    if left <= 0 then
      redis.call('HDEL', KEYS[2], share[i])
    end
  end
  redis.call('DEL', nk, prefix .. ':nodeinfo:' .. node)
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[3], node)
  redis.call('HDEL', KEYS[4], node)
  redis.call('HDEL', KEYS[5], node)
end

-- publish rewrites online_users from the users hash and keeps the day's
-- peak; it returns the number of online users. The key keeps the expiry
-- heartbeats give it (see heartbeat.lua).
local function publish(prefix, now)
  local online = redis.call('HLEN', KEYS[2])
  redis.call('SET', KEYS[6], online, 'KEEPTTL')
  local pk = peak_key(prefix, now)
  local peak = tonumber(redis.call('GET', pk) or '0')
  if online > peak then
    redis.call('SET', pk, online, 'EX', PEAK_TTL)
  end
  return online
end

-- lease_owner returns the process token of a stored sequence
-- ("<sequence>:<token>"), or '' when it has none.
local function lease_owner(seq)
  return string.match(seq or '', ':(.*)$') or ''
end
