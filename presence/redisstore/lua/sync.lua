-- sync.lua: one step of a rewrite of a node's whole share, which also
-- registers the node with a fresh lease. Used at start, after a write
-- whose outcome could not be settled, and whenever apply.lua or
-- heartbeat.lua answers RESYNC (the node was reaped or Redis lost data).
--
-- A rewrite is one attempt with a fresh sequence S, sent as chunks 1..n of
-- at most BUDGET users each (n = 0 for an empty share); the Go side calls
-- this script until it answers "done" (see Store.Sync). Its steps, each
-- bounded by BUDGET hash entries:
--   begin  (the first call of attempt S) fences and takes the lease, then
--          renames the old share to KEYS[K_OLD], the part not replaced yet;
--          if an earlier attempt left one, phase 'f' folds the share back
--          into it first;
--   'c'    each chunk sets its users in the share, taking each user's old
--          count out of KEYS[K_OLD] and changing the users hash by the net
--          difference;
--   'd'    after the last chunk, what is left in KEYS[K_OLD] (users no
--          longer on the node) is taken out of the sums; once it is empty
--          the connection figures are set and the rewrite is done.
-- Each user's count changes once, by its net difference, so a user whose
-- cluster-wide count crosses 0 emits its online/offline event (a user in
-- both the old and the new share emits nothing).
-- The attempt's progress is in KEYS[K_REWRITE][node], so a call whose
-- reply was lost is settled by reading it back (a chunk already applied is
-- not applied again), and while it is there Counts is Partial.
--
-- KEYS: as in lib.lua.
-- ARGV[1] key prefix
-- ARGV[2] node id
-- ARGV[3] the attempt's sequence "<S>:<token>", fresh for every attempt
-- ARGV[4] lease length in ms
-- ARGV[5] the node's guest connections
-- ARGV[6] the node's load figures (JSON), or "" to leave them unset
-- ARGV[7] the day's peak the node remembers ("<day>:<peak>" or "")
-- ARGV[8] the chunk this call carries (1..n), or 0 for none
-- ARGV[9] n, the number of chunks of the attempt
-- ARGV[10], ARGV[11], ... the chunk: pairs of user id, connections (> 0)
--
-- Returns {"done", online users, peak memory} when the rewrite is done, or
-- {"more", chunks applied so far} when the next call must carry chunk
-- "chunks applied + 1" (or none once all are applied). Errors, without
-- writing anything: "TAKEN <lease expiry ms> ..." when another process
-- (another token) holds a live lease on the node id, "STALE ..." when the
-- stored sequence of this process is newer than S (a late call of an
-- abandoned attempt).

local prefix, node, seq = ARGV[1], ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[4])
local k, n = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = now_ms()
local S = seq_num(seq)
local held = redis.call('HGET', KEYS[5], node)

-- The attempt's state, if it is under way.
local phase, done, total, cursor
if held == seq then
  local state = redis.call('HGET', KEYS[K_REWRITE], node)
  if not state then
    -- This attempt already finished: a reply that was lost.
    return {'done', redis.call('HLEN', KEYS[2]), peak_of(prefix, now)}
  end
  local s_, p_, k_, t_, c_ = string.match(state, '^(%d+):(%a):(%d+):(%d+):(.*)$')
  if tonumber(s_) == S then
    phase, done, total, cursor = p_, tonumber(k_), tonumber(t_), c_
  end
end

if not phase then
  -- begin
  if held and lease_owner(held) ~= lease_owner(seq) then
    local lease = redis.call('ZSCORE', KEYS[1], node)
    if lease and tonumber(lease) > now then
      return redis.error_reply('TAKEN ' .. lease .. ' node id ' .. node .. ' is held by another live process')
    end
  elseif held and seq_num(held) >= S then
    return redis.error_reply('STALE sequence ' .. S .. ' is older than the stored ' .. held)
  end
  touch_epoch(now)
  restore_peak(prefix, now, ARGV[7])
  redis.call('HSET', KEYS[5], node, seq)
  if redis.call('EXISTS', KEYS[K_OLD]) == 1 then
    phase = 'f' -- an earlier attempt stopped half-way
  else
    if redis.call('EXISTS', KEYS[8]) == 1 then
      redis.call('RENAME', KEYS[8], KEYS[K_OLD])
    end
    phase = 'c'
  end
  done, total, cursor = 0, 0, '0'
end
redis.call('ZADD', KEYS[1], now + ttl, node)

local work = 0
if phase == 'f' then
  -- Move the share an earlier attempt wrote back into the unreplaced part
  -- (the two never hold the same user; both are counted in the sums).
  while work < BUDGET and redis.call('EXISTS', KEYS[8]) == 1 do
    local page = redis.call('HSCAN', KEYS[8], cursor, 'COUNT', math.max(10, BUDGET - work))
    local fields = {}
    for j = 1, #page[2], 2 do
      redis.call('HINCRBY', KEYS[K_OLD], page[2][j], page[2][j + 1])
      fields[#fields + 1] = page[2][j]
    end
    hdel(KEYS[8], fields)
    work, cursor = work + #fields + 10, page[1]
  end
  if redis.call('EXISTS', KEYS[8]) == 0 then
    phase, cursor = 'c', '0'
  end
end

if phase == 'c' and k == done + 1 and work < BUDGET then
  local users = {}
  for i = 10, #ARGV, 2 do
    users[#users + 1] = ARGV[i]
  end
  if #users > 0 then
    local old = redis.call('HMGET', KEYS[K_OLD], unpack(users))
    for j, user in ipairs(users) do
      local c = tonumber(ARGV[9 + 2 * j])
      local d = c - tonumber(old[j] or '0')
      if d ~= 0 then
        add_user(user, d, now)
      end
      total = total + c
    end
    hdel(KEYS[K_OLD], users)
    redis.call('HSET', KEYS[8], unpack(ARGV, 10))
  end
  done, work = k, work + #users
end
if phase == 'c' and done >= n then
  phase, cursor = 'd', '0'
end

if phase == 'd' and work < BUDGET then
  local _, w
  _, w, cursor = drain(KEYS[K_OLD], cursor, BUDGET - work, now)
  work = work + w
  if redis.call('EXISTS', KEYS[K_OLD]) == 0 then
    local guests = tonumber(ARGV[5])
    redis.call('HSET', KEYS[3], node, total + guests)
    redis.call('HSET', KEYS[4], node, guests)
    redis.call('HDEL', KEYS[K_REWRITE], node)
    if ARGV[6] ~= '' then
      redis.call('SET', KEYS[9], ARGV[6], 'PX', ttl)
    end
    flush(now)
    return {'done', publish(prefix, now), peak_of(prefix, now)}
  end
end

flush(now)
redis.call('HSET', KEYS[K_REWRITE], node, S .. ':' .. phase .. ':' .. done .. ':' .. total .. ':' .. cursor)
publish(prefix, now)
return {'more', done}
