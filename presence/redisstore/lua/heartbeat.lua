-- heartbeat.lua: renews a node's lease, stores its load figures, retires
-- every node whose lease has expired and takes a bounded part of the
-- shares being reaped out of the sums (reap.lua takes the rest).
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the node's current sequence (must match KEYS[5][node])
-- ARGV[4] lease length in ms
-- ARGV[5] the node's load figures (JSON), or "" to leave them as they are
-- ARGV[6] the day's peak the node remembers ("<day>:<peak>" or "")
--
-- Reaping emits an offline event for every user it takes to 0.
--
-- Returns {online users, 1 when registered and current (0 when not
-- registered, 2 when its sequence differs), 1 when reaps remain (else 0),
-- today's peak as "<day>:<peak>", then for each reap finished: node id,
-- users in its share, connections in its share}. The reaping is done
-- either way; the Go side turns "not registered or sequence differs" into
-- RESYNC (a script error would lose what it reaped).

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
touch_epoch(now)
restore_peak(prefix, now, ARGV[6])

local registered = redis.call('ZSCORE', KEYS[1], node)
local current = registered and redis.call('HGET', KEYS[5], node) == ARGV[3]
if current then
  redis.call('ZADD', KEYS[1], now + ttl, node)
  if ARGV[5] ~= '' then
    redis.call('SET', KEYS[9], ARGV[5], 'PX', ttl)
  end
end

-- Retiring is O(1) per node; the users are taken out BUDGET at a time.
local changed, empty = false, {}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  local id, users, conns = drop_node(prefix, n, now)
  if not id then -- nothing to take out: reaped already
    empty[#empty + 1] = n
    empty[#empty + 1] = users
    empty[#empty + 1] = conns
  end
  changed = true
end
local took, more, finished = reap_some(prefix, BUDGET, now)
flush(now)
for _, v in ipairs(empty) do
  finished[#finished + 1] = v
end
-- online_users is rewritten by every script that changes the sums; a
-- heartbeat changes them only when it reaps (or the key is gone), and
-- otherwise leaves the key alone.
local online
if changed or took > 0 or redis.call('EXISTS', KEYS[6]) == 0 then
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
local out = {online, status, more and 1 or 0, peak_of(prefix, now)}
for _, v in ipairs(finished) do
  out[#out + 1] = v
end
return out
