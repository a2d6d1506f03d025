-- Append rows to a bounded history hash (row key -> float32 bytes) and drop the oldest.
--
-- KEYS[1]  the history hash          ARGV[1]  how many rows to keep
-- KEYS[2]  the region's history revision (an integer), incremented in the same script, so
--          no write to a history is ever left without a new revision (readers that keep
--          what they built from the histories compare revisions: `keys.history_revision`)
-- ARGV[2k], ARGV[2k+1]  row key (sortable text, e.g. an ISO date) and its values
--
-- Writing a row key again overwrites it with the same (or a corrected) value, which makes a
-- retried ingestion idempotent. Returns the number of rows kept.

local limit = tonumber(ARGV[1])
redis.call('INCR', KEYS[2])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local n = redis.call('HLEN', KEYS[1])
if n > limit then
  local fields = redis.call('HKEYS', KEYS[1])
  table.sort(fields)
  for i = 1, n - limit do redis.call('HDEL', KEYS[1], fields[i]) end
  n = limit
end
return n
