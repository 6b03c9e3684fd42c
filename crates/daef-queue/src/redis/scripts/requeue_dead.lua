-- In one step, takes references off the dead list (where present, with a fresh nack budget)
-- and appends references to the pending lists.
-- KEYS: pending, pending:batch, nacks, dead, dead:members
-- ARGV: n, then n references to take off the dead list, then (tag, reference) pairs to
--       enqueue, tag 'i' (interactive) or 'b' (batch)
-- Returns how many references left the dead list.
local n = tonumber(ARGV[1])
local removed = 0
for i = 2, n + 1 do
  local ref = ARGV[i]
  redis.call('HDEL', KEYS[3], ref)
  if redis.call('SREM', KEYS[5], ref) == 1 then
    -- O(length of the dead list), only on this admin path; the members set keeps the hot
    -- paths free of list scans.
    redis.call('LREM', KEYS[4], 0, ref)
    removed = removed + 1
  end
end
for i = n + 2, #ARGV, 2 do
  local list = KEYS[1]
  if ARGV[i] == 'b' then
    list = KEYS[2]
  end
  redis.call('RPUSH', list, ARGV[i + 1])
end
return removed
