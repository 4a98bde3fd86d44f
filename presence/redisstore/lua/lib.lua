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
--   KEYS[10] <prefix>:transitions   STREAM online/offline transitions: one entry
--                               per script call that made any (see flush),
--                               fields at (ms), then "+" user (online) or
--                               "-" user (offline) per transition, in order;
--                               trimmed to about EVENTS_MAXLEN transitions
--   KEYS[K_OLD]     <prefix>:old:<id> HASH user -> connections: the part of the
--                   node's previous share a rewrite in progress has not
--                   replaced yet (see sync.lua)
--   KEYS[K_REWRITE] <prefix>:rewrite  HASH node -> "<seq>:<phase>:<chunks done>:
--                   <connections so far>:<scan cursor>" of each rewrite in
--                   progress; while it is not empty Counts is Partial
--   KEYS[K_REAPING] <prefix>:reaping  HASH reap id -> "<users>:<connections>:
--                   <scan cursor>:<node>" of each share being reaped; the share
--                   is in <prefix>:reap:<id>:s and its unreplaced part in
--                   <prefix>:reap:<id>:o
--   KEYS[K_REPAIR]  <prefix>:repair   STRING repair.lua's shared scan cursor
--   then a script's own keys, if any, and last of all
--   KEYS[#KEYS] <prefix>:peak:<day> STRING the peak of today, the day
--                               numbered by the node in STATS_TIMEZONE
-- ARGV[1] is always the key prefix, used to name other nodes' keys when
-- reaping them; ARGV[2] is always this node's id.
--
-- The K_* indexes, RECOVERY_MS (the recovery window), BUDGET (hash
-- entries one call may change) and EVENTS_MAXLEN are set by the Go side in
-- lines put before this file.
--
-- Transitions: every change of a user's count in KEYS[2] goes through
-- add_user, which records an event (emit) when the count crosses 0, and
-- every script that may change KEYS[2] calls flush before it returns, which
-- writes the call's events to KEYS[10] as one entry. KEYS[2] is the
-- cluster-wide count, so each transition is emitted once for the whole
-- cluster, by the script that made it.
--
-- Bounded work: no script changes more than about BUDGET users, so none
-- holds Redis for more than a few milliseconds whatever a share's size. A
-- rewrite (sync.lua) and a reap (reap.lua, heartbeat.lua, leave.lua) take as
-- many calls as they need. Between calls the users hash always equals the
-- sum, per user, of every share, unreplaced part and share being reaped:
--   users[u] = sum over nodes of node[u] + old[u], plus sum over reaps of
--              reap:s[u] + reap:o[u]
-- and every call changes each user it touches once, by its net change, so
-- a user whose count crosses 0 in a call is a real transition.
-- Intermediate states are told apart as follows: a reap only ever takes a
-- dead node's users away, one by one, as if they disconnected, so each state
-- is a count some moment could have had; a rewrite mixes the node's old
-- share (what Redis believed) with its new one, so while any is in progress
-- Counts is Partial and the day's peak is not raised.

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

-- touch_epoch records that a node wrote now. A new data set is marked as
-- recovering for RECOVERY_MS whoever writes first (a node that just
-- started, a node leaving, a node back after an outage): Redis cannot tell
-- a cluster's first start from data loss (FLUSHALL, a restart without
-- persistence), and after a loss every live node still has a share to
-- rewrite, which each does at its next heartbeat.
local function touch_epoch(now)
  local created = redis.call('HSETNX', KEYS[7], 'created', now) == 1
  redis.call('HSET', KEYS[7], 'clock', now)
  if created then
    redis.call('HSET', KEYS[7], 'recovering', now + RECOVERY_MS)
  end
  return created
end

-- seq_num returns the numeric part of a stored sequence "<n>:<token>".
local function seq_num(seq)
  return tonumber(string.match(seq or '', '^(%d+)') or '-1')
end

-- The call's transitions, in the order it made them, as the field/value
-- pairs of its stream entry: "+", user for online, "-", user for offline.
-- One XADD per call instead of one per transition, which cost about a
-- third of Redis's time per connect (BENCHMARKS.md).
local events = {}

-- emit records one transition (kind 'online' or 'offline') for flush.
local function emit(kind, user)
  events[#events + 1] = kind == 'online' and '+' or '-'
  events[#events + 1] = user
end

-- EVENTS_PER_ENTRY bounds an entry, as unpack (Lua's C stack) bounds the
-- arguments of one redis.call; a call with more transitions writes several
-- entries in a row.
local EVENTS_PER_ENTRY = 2000

-- flush writes the transitions emit recorded to the events stream as one
-- entry "at <now> +|- <user> ...", or several of EVENTS_PER_ENTRY, and
-- forgets them. A reader names the k-th transition (from 0) of entry <id>
-- "<id>" for k = 0 and "<id>.<k>" after (see who.go). MAXLEN counts
-- entries, so each XADD trims to EVENTS_MAXLEN / (its transitions) entries:
-- about EVENTS_MAXLEN transitions kept when calls are alike in size.
local function flush(now)
  local n = #events
  for i = 1, n, 2 * EVENTS_PER_ENTRY do
    local j = math.min(n, i + 2 * EVENTS_PER_ENTRY - 1)
    local keep = math.max(1, math.floor(EVENTS_MAXLEN * 2 / (j - i + 1)))
    redis.call('XADD', KEYS[10], 'MAXLEN', '~', keep, '*', 'at', now, unpack(events, i, j))
  end
  events = {}
end

-- add_user changes a user's cluster-wide count by d (dropping it at 0) and
-- emits the transition if the count crossed 0; with quiet it only changes
-- the count. The bounded scripts change each user once per call, by its
-- net difference (see above), so a crossing in a call is a transition.
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
    emit('online', user)
  elseif before > 0 and left <= 0 then
    emit('offline', user)
  end
  return left
end

-- hdel deletes the fields of list from key, a few thousand at a time (Lua's
-- unpack has a limit).
local function hdel(key, list)
  for i = 1, #list, 4000 do
    redis.call('HDEL', key, unpack(list, i, math.min(#list, i + 3999)))
  end
end

-- drop_node retires a node in O(1): its share (and the unreplaced part of
-- a rewrite it left unfinished) is renamed to a reap, and its lease,
-- sequence, connection figures and rewrite state are removed, so the node
-- must rewrite its share to count again. The users stay counted until
-- reap_some takes them out. Returns the reap id, or nil when the share was
-- empty (nothing to reap), the users in the share and its connections.
local function drop_node(prefix, node, now)
  local share, old = prefix .. ':node:' .. node, prefix .. ':old:' .. node
  local users = redis.call('HLEN', share) + redis.call('HLEN', old)
  local conns = tonumber(redis.call('HGET', KEYS[3], node) or '0')
  local id = nil
  if users > 0 then
    id = node .. '@' .. now
    while redis.call('HEXISTS', KEYS[K_REAPING], id) == 1 do
      id = id .. '+'
    end
    local rk = prefix .. ':reap:' .. id
    if redis.call('EXISTS', share) == 1 then
      redis.call('RENAME', share, rk .. ':s')
    end
    if redis.call('EXISTS', old) == 1 then
      redis.call('RENAME', old, rk .. ':o')
    end
    redis.call('HSET', KEYS[K_REAPING], id, users .. ':' .. conns .. ':0:' .. node)
  end
  redis.call('DEL', prefix .. ':nodeinfo:' .. node)
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[3], node)
  redis.call('HDEL', KEYS[4], node)
  redis.call('HDEL', KEYS[5], node)
  redis.call('HDEL', KEYS[K_REWRITE], node)
  return id, users, conns
end

-- drain takes up to budget entries of key (a share or its unreplaced part)
-- out of the sums, scanning from cursor, and deletes them. Each HSCAN also
-- counts as 10 units of work, so that a table of empty buckets cannot make
-- a call long. Returns the entries taken, the work done and the next cursor
-- ('0' once the key is gone).
local function drain(key, cursor, budget, now)
  local took, work = 0, 0
  while work < budget and redis.call('EXISTS', key) == 1 do
    local page = redis.call('HSCAN', key, cursor, 'COUNT', math.max(10, budget - work))
    local fields = {}
    for j = 1, #page[2], 2 do
      add_user(page[2][j], -tonumber(page[2][j + 1]), now)
      fields[#fields + 1] = page[2][j]
    end
    hdel(key, fields)
    took, work, cursor = took + #fields, work + #fields + 10, page[1]
  end
  if redis.call('EXISTS', key) == 0 then
    cursor = '0'
  end
  return took, work, cursor
end

-- reap_some takes up to about budget users of the shares being reaped out
-- of the sums. It returns the users it took, whether reaps remain, and the
-- reaps it finished as a flat list {node, users, connections, ...}.
local function reap_some(prefix, budget, now)
  local took, work, finished = 0, 0, {}
  local list = redis.call('HGETALL', KEYS[K_REAPING])
  for i = 1, #list, 2 do
    if work >= budget then
      break
    end
    local id = list[i]
    local users, conns, cursor, node = string.match(list[i + 1], '^(%d+):(%d+):([^:]*):(.*)$')
    local rk = prefix .. ':reap:' .. id
    for _, key in ipairs({rk .. ':s', rk .. ':o'}) do
      if work < budget and redis.call('EXISTS', key) == 1 then
        local t, w
        t, w, cursor = drain(key, cursor, budget - work, now)
        took, work = took + t, work + w
      end
    end
    if redis.call('EXISTS', rk .. ':s') == 0 and redis.call('EXISTS', rk .. ':o') == 0 then
      redis.call('HDEL', KEYS[K_REAPING], id)
      finished[#finished + 1] = node
      finished[#finished + 1] = tonumber(users)
      finished[#finished + 1] = tonumber(conns)
    else
      redis.call('HSET', KEYS[K_REAPING], id, users .. ':' .. conns .. ':' .. cursor .. ':' .. node)
    end
  end
  return took, redis.call('HLEN', KEYS[K_REAPING]) > 0, finished
end

-- publish rewrites online_users from the users hash and keeps the day's
-- peak; it returns the number of online users. The key keeps the expiry
-- heartbeats give it (see heartbeat.lua). The peak is not raised while a
-- rewrite is in progress: its intermediate counts are not the truth.
local function publish(prefix, now)
  local online = redis.call('HLEN', KEYS[2])
  redis.call('SET', KEYS[6], online, 'KEEPTTL')
  if redis.call('HLEN', KEYS[K_REWRITE]) == 0 then
    local pk = peak_key(prefix, now)
    local peak = tonumber(redis.call('GET', pk) or '0')
    if online > peak then
      redis.call('SET', pk, online, 'EX', PEAK_TTL)
    end
  end
  return online
end

-- peak_day is the number of today's peak key (<prefix>:peak:<day>).
local function peak_day(prefix, now)
  return tonumber(string.match(peak_key(prefix, now), ':(%d+)$') or '-1')
end

-- restore_peak puts back a day's peak a node remembers ("<day>:<peak>", as
-- peak_of returned it) when the stored one is lower: after data loss the
-- day's peak is rebuilt from what the nodes saw. A memory of another day
-- is ignored.
local function restore_peak(prefix, now, memory)
  local day, peak = string.match(memory or '', '^(%d+):(%d+)$')
  if day and tonumber(day) == peak_day(prefix, now) then
    local pk = peak_key(prefix, now)
    if tonumber(peak) > tonumber(redis.call('GET', pk) or '0') then
      redis.call('SET', pk, peak, 'EX', PEAK_TTL)
    end
  end
end

-- peak_of returns today's peak as "<day>:<peak>", for the node to remember.
local function peak_of(prefix, now)
  return peak_day(prefix, now) .. ':' .. (redis.call('GET', peak_key(prefix, now)) or '0')
end

-- lease_owner returns the process token of a stored sequence
-- ("<sequence>:<token>"), or '' when it has none.
local function lease_owner(seq)
  return string.match(seq or '', ':(.*)$') or ''
end
