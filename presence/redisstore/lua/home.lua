-- home.lua: keeps online_users the sum of the shards' online users when
-- presence is split over shards (PRESENCE_SHARDS > 1; see sharded.go).
-- Not prepended with lib.lua.
--
-- Each shard's writing scripts return the shard's state
-- "<ms>:<version>:<users>:<rewriting>" (shardTrailer in redisstore.go); the
-- nodes hand the states they saw to this script, which keeps the newest of
-- each shard and sets online_users to their sum. Keeping the newest state
-- per shard (ordered by the shard's clock, then its write counter) makes
-- the updates of concurrent nodes compose in any order, and a state that
-- arrives late or twice changes nothing: once every shard's newest state
-- has arrived, online_users is the exact sum. Every heartbeat hands over
-- all the shards' states, so a state a node never handed over (it died
-- right after the shard's write) is in the sum within one heartbeat.
--
-- KEYS[1] online_users  STRING the sum
-- KEYS[2] <home>:shards HASH n -> the number of shards these keys are for;
--                       <shard index> -> the newest state seen
-- KEYS[3] <home>:peak:<day> STRING the day's peak of the sum
-- ARGV[1] the number of shards N
-- ARGV[2] lease length in ms: the sum and the states expire two leases
--         after the last node's last write or heartbeat (so keys left by
--         nodes that all died go away, as online_users does without shards)
-- ARGV[3] the day's peak the node remembers ("<day>:<peak>" or "")
-- ARGV[4], ARGV[5], ... pairs of shard index, state
--
-- The day's peak is raised only while no shard is rewriting a share and
-- every shard has reported (as sync.lua does without shards).
--
-- Returns {the sum, 1 when a shard is rewriting or has not reported (else
-- 0), today's peak as "<day>:<peak>"}, or the error "LAYOUT ..." when the
-- keys are for another number of shards.

local PEAK_TTL = 172800
local n = tonumber(ARGV[1])
local stored = redis.call('HGET', KEYS[2], 'n')
if stored and tonumber(stored) ~= n then
  return redis.error_reply('LAYOUT these presence keys are split over ' .. stored ..
    ' shards, not ' .. n .. ': every node must run with the same PRESENCE_SHARDS')
end

local function parse(state)
  local ms, version, users, partial = string.match(state or '', '^(%d+):(%d+):(%d+):(%d)$')
  if not ms then
    return nil
  end
  return {tonumber(ms), tonumber(version), tonumber(users), partial == '1'}
end

if not stored then
  redis.call('HSET', KEYS[2], 'n', n)
end
for i = 4, #ARGV, 2 do
  local new = parse(ARGV[i + 1])
  local cur = parse(redis.call('HGET', KEYS[2], ARGV[i]))
  if new and (not cur or new[1] > cur[1] or (new[1] == cur[1] and new[2] > cur[2])) then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end

local fields = {}
for i = 0, n - 1 do
  fields[#fields + 1] = tostring(i)
end
local sum, partial = 0, 0
for _, state in ipairs(redis.call('HMGET', KEYS[2], unpack(fields))) do
  local st = parse(state)
  if not st then
    partial = 1
  else
    sum = sum + st[3]
    if st[4] then
      partial = 1
    end
  end
end
redis.call('SET', KEYS[1], sum)
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)

local today = string.match(KEYS[3], ':(%d+)$')
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
local day, remembered = string.match(ARGV[3], '^(%d+):(%d+)$')
if day and day == today and tonumber(remembered) > peak then
  peak = tonumber(remembered)
  redis.call('SET', KEYS[3], peak, 'EX', PEAK_TTL)
end
if partial == 0 and sum > peak then
  peak = sum
  redis.call('SET', KEYS[3], peak, 'EX', PEAK_TTL)
end
return {sum, partial, today .. ':' .. peak}
