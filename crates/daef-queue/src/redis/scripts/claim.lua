-- Acks the receipts in ARGV[4..] (as ack.lua does), then claims up to ARGV[2] references,
-- interactive before batch, oldest first.
-- KEYS: pending, pending:batch, claims, visibility, nacks
-- ARGV: visible-at (Unix ms), max, receipt base (a client-generated uuid v4), receipts to ack
-- Returns a flat array: receipt, tag ('i' or 'b'), reference, for each claim.
for i = 4, #ARGV do
  local claimed = redis.call('HGET', KEYS[3], ARGV[i])
  if claimed then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZREM', KEYS[4], ARGV[i])
    redis.call('HDEL', KEYS[5], string.sub(claimed, 3))
  end
end
local visible_at = ARGV[1]
local max = tonumber(ARGV[2])
local base = ARGV[3]
local lists = { KEYS[1], KEYS[2] }
local tags = { 'i', 'b' }
local out = {}
local n = 0
for slot = 1, 2 do
  while n < max do
    local ref = redis.call('LPOP', lists[slot])
    if not ref then
      break
    end
    n = n + 1
    -- Zero-padded so receipts of one call sort in claim order within the visibility zset.
    local receipt = base .. '-' .. string.format('%06d', n)
    redis.call('HSET', KEYS[3], receipt, tags[slot] .. '|' .. ref)
    redis.call('ZADD', KEYS[4], visible_at, receipt)
    out[#out + 1] = receipt
    out[#out + 1] = tags[slot]
    out[#out + 1] = ref
  end
end
return out
