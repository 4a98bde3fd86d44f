-- counts.lua: reads the cluster-wide counts in one consistent snapshot.
--
-- KEYS: as in lib.lua (only KEYS[3], KEYS[4], KEYS[6], KEYS[7] and
-- KEYS[K_REWRITE] are read).
-- ARGV[1] key prefix
--
-- Returns {online users or false, connections, guests, peak today,
--          1 when there is a data set (else 0),
--          1 while it is recovering from lost data or a share is being
--          rewritten (else 0)}.

local now = now_ms()
local online = redis.call('GET', KEYS[6])
local conns, guests = 0, 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  conns = conns + tonumber(v)
end
for _, v in ipairs(redis.call('HVALS', KEYS[4])) do
  guests = guests + tonumber(v)
end
local peak = tonumber(redis.call('GET', peak_key(ARGV[1], now)) or '0')
local epoch = redis.call('HMGET', KEYS[7], 'created', 'recovering')
local exists, recovering = 0, 0
if epoch[1] then
  exists = 1
end
if epoch[2] and tonumber(epoch[2]) > now then
  recovering = 1
end
-- A rewrite in progress mixes a node's old and new share (see lib.lua).
if redis.call('HLEN', KEYS[K_REWRITE]) > 0 then
  recovering = 1
end
return {online, conns, guests, peak, exists, recovering}
