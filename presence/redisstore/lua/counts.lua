-- counts.lua: reads the cluster-wide counts in one consistent snapshot.
--
-- KEYS: as in lib.lua (only KEYS[3], KEYS[4], KEYS[6] and KEYS[7] are read).
-- ARGV[1] key prefix
--
-- Returns {online users or false, connections, guests, peak today,
--          ms since the data set began or -1 when there is none}.

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
local created = redis.call('HGET', KEYS[7], 'created')
local age = -1
if created then
  age = now - tonumber(created)
end
return {online, conns, guests, peak, age}
