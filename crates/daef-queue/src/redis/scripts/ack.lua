-- Drops claims for good and forgets their references' nack counts. Unknown receipts are ignored.
-- KEYS: claims, visibility, nacks
-- ARGV: receipts
-- Returns how many claims were dropped.
local acked = 0
for _, receipt in ipairs(ARGV) do
  local claimed = redis.call('HGET', KEYS[1], receipt)
  if claimed then
    redis.call('HDEL', KEYS[1], receipt)
    redis.call('ZREM', KEYS[2], receipt)
    redis.call('HDEL', KEYS[3], string.sub(claimed, 3))
    acked = acked + 1
  end
end
return acked
