-- apply.lua: applies one batch of per-user connection deltas from a node.
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the node's sequence before this batch (must match KEYS[5][node])
-- ARGV[4] the node's sequence after this batch
-- ARGV[5] change in the node's guest connections
-- ARGV[6], ARGV[7], ... pairs of user id, change in that user's connections
--
-- Emits an online/offline event for every user whose cluster-wide count
-- crosses 0, all in one stream entry. Returns the number of online users, or the error "RESYNC ..." without
-- writing anything when the node is not registered, its sequence differs
-- (a write was lost) or a delta would take a count below zero.

local prefix, node = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', KEYS[1], node) then
  return redis.error_reply('RESYNC node not registered')
end
if redis.call('HGET', KEYS[5], node) ~= ARGV[3] then
  return redis.error_reply('RESYNC sequence mismatch')
end

-- Check every delta first: a script is not rolled back on error, so it
-- must not fail after its first write.
local total = 0
for i = 6, #ARGV, 2 do
  local d = tonumber(ARGV[i + 1])
  if d < 0 then
    local have = tonumber(redis.call('HGET', KEYS[8], ARGV[i]) or '0')
    if have + d < 0 then
      return redis.error_reply('RESYNC share below zero')
    end
  end
  total = total + d
end
local guests = tonumber(ARGV[5])
if guests < 0 and tonumber(redis.call('HGET', KEYS[4], node) or '0') + guests < 0 then
  return redis.error_reply('RESYNC guests below zero')
end

local now = now_ms()
for i = 6, #ARGV, 2 do
  local user, d = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('HINCRBY', KEYS[8], user, d) <= 0 then
    redis.call('HDEL', KEYS[8], user)
  end
  add_user(user, d, now)
end
redis.call('HINCRBY', KEYS[3], node, total + guests)
redis.call('HINCRBY', KEYS[4], node, guests)
redis.call('HSET', KEYS[5], node, ARGV[4])

touch_epoch(now)
flush(now)
return publish(prefix, now)
