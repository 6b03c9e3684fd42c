-- The Redis ceiling: a claim-like step, as the queue moves one reference (enqueue, then the
-- claim script's LPOP + HSET + ZADD; see crates/daef-queue/src/redis/scripts/claim.lua).
-- KEYS: pending, claims, visibility
-- ARGV: receipt (redis-benchmark varies it with __rand_int__), visible-at (Unix ms)
redis.call('RPUSH', KEYS[1], 'job-bench|t1')
local ref = redis.call('LPOP', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], 'i|' .. ref)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return ref
