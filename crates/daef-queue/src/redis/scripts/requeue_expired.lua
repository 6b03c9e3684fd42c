-- Returns up to ARGV[2] claims whose visibility passed to the front of their pending lists,
-- the earliest-claimed first.
-- KEYS: pending, pending:batch, claims, visibility
-- ARGV: now (Unix ms), limit
-- Returns how many claims went back.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local back = {}
for _, receipt in ipairs(due) do
  redis.call('ZREM', KEYS[4], receipt)
  local claimed = redis.call('HGET', KEYS[3], receipt)
  if claimed then
    redis.call('HDEL', KEYS[3], receipt)
    back[#back + 1] = claimed
  end
end
-- Pushing to the front in reverse keeps the earliest-claimed reference first.
for i = #back, 1, -1 do
  local list = KEYS[1]
  if string.sub(back[i], 1, 1) == 'b' then
    list = KEYS[2]
  end
  redis.call('LPUSH', list, string.sub(back[i], 3))
end
return #back
