-- Returns a claimed reference to the front of its pending list, or to the dead list once it
-- has been nacked ARGV[2] times (0: never).
-- KEYS: pending, pending:batch, claims, visibility, nacks, dead, dead:members
-- ARGV: receipt, deadletter_max
-- Returns 0 for an unknown receipt (nothing changed), 1 when requeued, 2 when dead-lettered.
local claimed = redis.call('HGET', KEYS[3], ARGV[1])
if not claimed then
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local tag = string.sub(claimed, 1, 1)
local ref = string.sub(claimed, 3)
local nacks = redis.call('HINCRBY', KEYS[5], ref, 1)
local max = tonumber(ARGV[2])
if max > 0 and nacks >= max then
  redis.call('HDEL', KEYS[5], ref)
  if redis.call('SADD', KEYS[7], ref) == 1 then
    redis.call('RPUSH', KEYS[6], ref)
  end
  return 2
end
local list = KEYS[1]
if tag == 'b' then
  list = KEYS[2]
end
redis.call('LPUSH', list, ref)
return 1
