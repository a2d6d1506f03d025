-- Append events to the event log (a Redis Stream) after deciding, per event, what the
-- single-writer mode answers at once (`service.events.log_writer`): the user side of every
-- event, atomically, here; the model states later, by the one log applier.
--
-- What is decided here is exactly what the compare-and-set path decides from the user's keys:
-- a repeated event id is a duplicate, an event older than the user's newest is stale. So the
-- log only ever holds events that will be applied, in an order every user's events already
-- agree with, and the applier has nothing left to refuse.
--
-- KEYS[1]  the commit counter   KEYS[2] the log stream
-- then per event, 3 keys: idempotency key, behaviour sequence, count bucket
-- ARGV[1]  sequence bound   ARGV[2] idempotency TTL (s)   ARGV[3] idle-user TTL (s, 0: never)
-- ARGV[4]  the log's length bound (entries; 0: none): a call that would pass it writes
--          nothing and answers -3 for every event, rather than trimming entries the applier
--          has not read
-- then per event, 6 values: ts (decimal text), event id, sequence entry, action, count bucket
--          EXPIREAT (unix s), the log entry's payload
--
-- Returns three values per event:
--   1, commit number, 0       accepted: in the log as entry <commit>-0, user side written
--   0, commit, 0              duplicate: the idempotency key holds 'c' and the commit number
--                             the event was accepted with, returned so that a client whose
--                             first answer was lost still learns it (0 when unknown: the key
--                             was written by the compare-and-set mode, or it has expired and
--                             the event is its user's newest)
--  -1, ts, event id           stale: the user already has this newer event
--  -3, 0, 0                   the log is full (the applier is behind): nothing of the call
--                             was written

local seq_max = tonumber(ARGV[1])
local ttl = ARGV[2]
local user_ttl = tonumber(ARGV[3])
local log_max = tonumber(ARGV[4])
local n = (#KEYS - 2) / 3
local out = {}
if log_max > 0 and redis.call('XLEN', KEYS[2]) + n > log_max then
  for e = 1, n do
    out[#out + 1] = -3
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
  return out
end

for e = 0, n - 1 do
  local kb, ab = 2 + e * 3, 4 + e * 6
  local ts_text, eid = ARGV[ab + 1], ARGV[ab + 2]
  local code, x, y = 1, 0, 0
  do
    local seen = redis.call('GET', KEYS[kb + 1])
    if seen then
      code = 0
      if string.sub(seen, 1, 1) == 'c' then x = string.sub(seen, 2) end
    end
  end
  if code == 1 then
    local tail = redis.call('LINDEX', KEYS[kb + 2], -1)
    if tail then
      local lts, leid = entry_version(tail)
      local c = cmp(tonumber(ts_text), eid, tonumber(lts), leid)
      if c == 0 then code = 0 elseif c < 0 then code, x, y = -1, lts, leid end
    end
  end
  if code == 1 then
    local commit = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[kb + 1], 'c' .. commit, 'EX', ttl)
    if redis.call('RPUSH', KEYS[kb + 2], ARGV[ab + 3]) > seq_max then
      redis.call('LTRIM', KEYS[kb + 2], -seq_max, -1)
    end
    if user_ttl > 0 then redis.call('EXPIRE', KEYS[kb + 2], user_ttl) end
    if redis.call('HINCRBY', KEYS[kb + 3], ARGV[ab + 4], 1) == 1 then
      redis.call('EXPIREAT', KEYS[kb + 3], ARGV[ab + 5])
    end
    redis.call('XADD', KEYS[2], commit .. '-0', 'e', ARGV[ab + 6])
    x = commit
  end
  out[#out + 1] = code
  out[#out + 1] = x
  out[#out + 1] = y
end
return out
