-- One use of a sliding-window limit, in a sorted set of use times.
-- KEYS: the limiter key's sorted set
-- ARGV: now (Unix µs), cutoff (now - window, µs), limit, unique member, ttl (ms), window (µs)
-- Returns 0 when the use is allowed (and recorded), else the whole seconds until the oldest
-- use leaves the window (at least 1).
-- A use exactly one window old has left the window, hence the inclusive cutoff.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = math.ceil((tonumber(oldest[2]) + tonumber(ARGV[6]) - tonumber(ARGV[1])) / 1000000)
if wait < 1 then
  wait = 1
end
return wait
