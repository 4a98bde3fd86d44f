-- ext_beat.lua: publishes a node's load figures in external mode, where
-- another program keeps the online count and nodes hold no share.
--
-- KEYS[1] <prefix>:nodes            ZSET node -> lease expiry (ms, Redis clock)
-- KEYS[2] <prefix>:nodeinfo:<id>    STRING the node's load figures (JSON)
-- ARGV[1] key prefix (unused; every script takes it first)
-- ARGV[2] node id
-- ARGV[3] lease length in ms
-- ARGV[4] the node's load figures (JSON)
--
-- Drops the leases that ran out (their figures expire with them) and
-- returns the number of live nodes.

local ttl = tonumber(ARGV[3])
local now = now_ms()
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
