-- Puts a reference on the dead list unless it is there already, and forgets its nack count.
-- KEYS: nacks, dead, dead:members
-- ARGV: reference
-- Returns 1 when the reference was added, 0 when it was on the dead list already.
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
