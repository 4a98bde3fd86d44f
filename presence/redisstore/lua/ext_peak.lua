-- ext_peak.lua: keeps the day's peak of an external counter as presenced
-- observes it.
--
-- KEYS[1] <prefix>:peak:<day>   STRING highest count seen that day
-- ARGV[1] key prefix (unused; every script takes it first)
-- ARGV[2] the count just read
--
-- Returns the day's peak, the count included.

local seen = tonumber(ARGV[2])
local peak = tonumber(redis.call('GET', KEYS[1]) or '0')
if seen > peak then
  redis.call('SET', KEYS[1], seen, 'EX', PEAK_TTL)
  return seen
end
return peak
