-- repair.lua: finds and repairs what key eviction (an allkeys-* policy)
-- or a partial loss leaves behind: a node's share that differs from what
-- the node holds, and users hash entries that differ from the sum of the
-- live shares (phantom users with no connections, or users missing).
-- Every call does a bounded slice of the work, about ARGV[7] hash reads.
--
-- KEYS: as in lib.lua, and
--   KEYS[K_REPAIR] <prefix>:repair   STRING cursor of the users-hash scan, shared by
--                               every node so that together they cover it
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the node's current sequence ("<sequence>:<token>")
-- ARGV[4] users on the node, as the node holds them, or -1 to skip the check
-- ARGV[5] connections on the node (guests included), or -1
-- ARGV[6] guest connections on the node, or -1
-- ARGV[7] budget: hash reads one call may make
-- ARGV[8] cursor of this node's scan of its own share ('0' to start)
--
-- Returns {users fixed in the users hash, next cursor for ARGV[8],
-- 1 when the node's share differs from what it holds (it must rewrite it),
-- else 0, then the share as Redis holds it: users, connections, guests
-- (-1, -1, -1 when the stored sequence is not ARGV[3])}.

local prefix, node = ARGV[1], ARGV[2]
local now = now_ms()

-- 1. This node's share, as the node last wrote it.
local differs = 0
local held = {-1, -1, -1}
if redis.call('HGET', KEYS[5], node) == ARGV[3] then
  held = {redis.call('HLEN', KEYS[8]), tonumber(redis.call('HGET', KEYS[3], node) or '0'),
          tonumber(redis.call('HGET', KEYS[4], node) or '0')}
  local users, conns, guests = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  if users >= 0 and redis.call('HLEN', KEYS[8]) ~= users then
    differs = 1
  elseif conns >= 0 and tonumber(redis.call('HGET', KEYS[3], node) or '-1') ~= conns then
    differs = 1
  elseif guests >= 0 and tonumber(redis.call('HGET', KEYS[4], node) or '-1') ~= guests then
    differs = 1
  end
end

-- Every hash a user's count is made of (see the invariant in lib.lua):
-- the live nodes' shares and unreplaced parts, and the shares being reaped.
local parts = {}
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  parts[#parts + 1] = prefix .. ':node:' .. n
  parts[#parts + 1] = prefix .. ':old:' .. n
end
for _, id in ipairs(redis.call('HKEYS', KEYS[K_REAPING])) do
  parts[#parts + 1] = prefix .. ':reap:' .. id .. ':s'
  parts[#parts + 1] = prefix .. ':reap:' .. id .. ':o'
end
local count = math.max(1, math.floor(tonumber(ARGV[7]) / math.max(1, #parts)))

local function shares_sum(user)
  local sum = 0
  for _, key in ipairs(parts) do
    sum = sum + tonumber(redis.call('HGET', key, user) or '0')
  end
  return sum
end

-- A phantom removed is a user who went offline unseen (their share was
-- evicted): it emits the offline event. A user restored to the hash was
-- online all along (only the hash entry was lost): no event.
local fixed = 0
local function settle(user, have)
  local sum = shares_sum(user)
  if sum ~= have then
    if sum > 0 then
      redis.call('HSET', KEYS[2], user, sum)
    else
      redis.call('HDEL', KEYS[2], user)
      if have > 0 then
        emit('offline', user)
      end
    end
    fixed = fixed + 1
  end
end

-- 2. A slice of the users hash against the shares: phantoms and wrong sums.
local page = redis.call('HSCAN', KEYS[2], redis.call('GET', KEYS[K_REPAIR]) or '0', 'COUNT', count)
for i = 1, #page[2], 2 do
  settle(page[2][i], tonumber(page[2][i + 1]))
end
redis.call('SET', KEYS[K_REPAIR], page[1])

-- 3. A slice of this node's share against the users hash: users the hash lost.
local own = redis.call('HSCAN', KEYS[8], ARGV[8], 'COUNT', count)
for i = 1, #own[2], 2 do
  local user = own[2][i]
  if redis.call('HEXISTS', KEYS[2], user) == 0 then
    settle(user, 0)
  end
end

flush(now)
if fixed > 0 then
  publish(prefix, now)
end
return {fixed, own[1], differs, held[1], held[2], held[3]}
