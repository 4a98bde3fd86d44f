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
--   KEYS[10] <prefix>:events   STREAM online/offline transitions, fields
--                               type (online|offline), user, at (ms); trimmed
--                               with MAXLEN ~ EVENTS_MAXLEN
--   then a script's own keys, if any, and last of all
--   KEYS[#KEYS] <prefix>:peak:<day> STRING the peak of today, the day
--                               numbered by the node in STATS_TIMEZONE
-- ARGV[1] is always the key prefix, used to name other nodes' keys when
-- reaping them; ARGV[2] is always this node's id.
--
-- EVENTS_MAXLEN is defined by the Go side in a line put before this file.
--
-- Transitions: every change of a user's count in KEYS[2] goes through
-- add_user, which appends an event to KEYS[10] when the count crosses 0.
-- KEYS[2] is the cluster-wide count, so each transition is emitted once
-- for the whole cluster, by the script that made it.

local PEAK_TTL = 172800 -- peak-of-day keys live two days

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- peak_key is today's peak key; the caller names it, as only it knows
-- STATS_TIMEZONE (prefix and now stay for the callers' sake).
local function peak_key(prefix, now)
  return KEYS[#KEYS]
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

-- emit appends one transition to the events stream.
local function emit(kind, user, now)
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', kind, 'user', user, 'at', now)
end

-- add_user changes a user's cluster-wide count by d (dropping it at 0) and
-- emits the transition if the count crossed 0; with quiet it only changes
-- the count (sync.lua decides transitions itself over the whole rewrite).
local function add_user(user, d, now, quiet)
  local left = redis.call('HINCRBY', KEYS[2], user, d)
  if left <= 0 then
    redis.call('HDEL', KEYS[2], user)
  end
  if quiet then
    return left
  end
  local before = left - d
  if before <= 0 and left > 0 then
    emit('online', user, now)
  elseif before > 0 and left <= 0 then
    emit('offline', user, now)
  end
  return left
end

-- drop_node subtracts a node's whole share from the cluster sums and
-- deletes its keys, emitting an offline event for each user it takes to
-- 0. It returns the users in the share and its connections (guests
-- included).
local function drop_node(prefix, node, now)
  local nk = prefix .. ':node:' .. node
  local share = redis.call('HGETALL', nk)
  for i = 1, #share, 2 do
    add_user(share[i], -tonumber(share[i + 1]), now, false)
  end
  local conns = tonumber(redis.call('HGET', KEYS[3], node) or '0')
  redis.call('DEL', nk, prefix .. ':nodeinfo:' .. node)
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[3], node)
  redis.call('HDEL', KEYS[4], node)
  redis.call('HDEL', KEYS[5], node)
  return #share / 2, conns
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
