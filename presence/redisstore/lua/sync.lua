-- sync.lua: replaces a node's whole share and registers it with a fresh
-- lease. Used at start, after any failed write, and whenever apply.lua or
-- heartbeat.lua answers RESYNC (the node was reaped or Redis lost data).
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the node's sequence after this sync, "<sequence>:<token>"
-- ARGV[4] lease length in ms
-- ARGV[5] the node's guest connections
-- ARGV[6] the node's load figures (JSON), or "" to leave them unset
-- ARGV[7] recovery window in ms if the node wrote before (so an empty
--         data set means Redis lost data), else 0
-- ARGV[8], ARGV[9], ... pairs of user id, that user's connections (> 0)
--
-- Emits an online/offline event for every user whose cluster-wide count
-- crosses 0 between before and after the rewrite. Returns the number of
-- online users, or the error "TAKEN <lease expiry ms> ..." without
-- writing anything when another process (another token) holds a live
-- lease on the node id.

local prefix, node = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[4])
local now = now_ms()
local held = redis.call('HGET', KEYS[5], node)
if held and lease_owner(held) ~= lease_owner(ARGV[3]) then
  local lease = redis.call('ZSCORE', KEYS[1], node)
  if lease and tonumber(lease) > now then
    return redis.error_reply('TAKEN ' .. lease .. ' node id ' .. node .. ' is held by another live process')
  end
end
touch_epoch(now, tonumber(ARGV[7]))

-- Take the old share out of the sums, remembering each touched user's
-- count before the rewrite: transitions compare before with after, so a
-- user in both the old and the new share emits nothing.
local before, touched = {}, {}
local function remember(user)
  if before[user] == nil then
    before[user] = tonumber(redis.call('HGET', KEYS[2], user) or '0')
    touched[#touched + 1] = user
  end
end
local old = redis.call('HGETALL', KEYS[8])
for i = 1, #old, 2 do
  remember(old[i])
  add_user(old[i], -tonumber(old[i + 1]), now, true)
end
redis.call('DEL', KEYS[8])

local total = 0
for i = 8, #ARGV, 2 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  if n > 0 then
    remember(user)
    redis.call('HSET', KEYS[8], user, n)
    add_user(user, n, now, true)
    total = total + n
  end
end
for _, user in ipairs(touched) do
  local after = tonumber(redis.call('HGET', KEYS[2], user) or '0')
  if before[user] <= 0 and after > 0 then
    emit('online', user, now)
  elseif before[user] > 0 and after <= 0 then
    emit('offline', user, now)
  end
end
local guests = tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], now + ttl, node)
redis.call('HSET', KEYS[3], node, total + guests)
redis.call('HSET', KEYS[4], node, guests)
redis.call('HSET', KEYS[5], node, ARGV[3])
if ARGV[6] ~= '' then
  redis.call('SET', KEYS[9], ARGV[6], 'PX', ttl)
end
return publish(prefix, now)
