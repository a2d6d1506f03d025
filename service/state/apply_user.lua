-- Apply one event to everything of its user, atomically, in the user's slot.
--
-- KEYS[1]  idempotency key of the event         KEYS[2]  the user's last-event hash
-- KEYS[3]  the behaviour sequence list          KEYS[4]  the count bucket hash
-- KEYS[5..] one state hash per model (may be none)
-- ARGV[1]  event ts (decimal text)   ARGV[2] event id     ARGV[3] sequence entry
-- ARGV[4]  sequence bound            ARGV[5] action       ARGV[6] count bucket EXPIREAT (unix s)
-- ARGV[7]  idempotency TTL (s)
-- ARGV[8+3(m-1)], +1, +2  per model m: new state (float32 bytes), ts and event id of the
--          state the caller computed from ('' = none)
--
-- Returns {1} applied; {0} duplicate (idempotency key present, or this very event is the
-- user's newest); {-1, ts, eid} stale (the user already has a newer event);
-- {-2, m} conflict on model m's state (another writer got in between: re-read, recompute).
--
-- Nothing is written unless every check passes, so an event is applied to the user's
-- state, sequence, counts and idempotency key all together or not at all.

local function strcmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 else return 1 end
    end
  end
  if #a < #b then return -1 else return 1 end
end

local function cmp(ts, eid, cts, ceid)
  if ts < cts then return -1 elseif ts > cts then return 1 end
  return strcmp(eid, ceid)
end

if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end

local ts, eid = tonumber(ARGV[1]), ARGV[2]
local last = redis.call('HMGET', KEYS[2], 'ts', 'eid')
if last[1] then
  local c = cmp(ts, eid, tonumber(last[1]), last[2])
  if c == 0 then return {0} end
  if c < 0 then return {-1, last[1], last[2]} end
end

local n = #KEYS - 4
for m = 1, n do
  local base = 8 + 3 * (m - 1)
  local cur = redis.call('HMGET', KEYS[4 + m], 'ts', 'eid')
  if cur[1] then
    local c = cmp(ts, eid, tonumber(cur[1]), cur[2])
    if c == 0 then return {0} end
    if c < 0 then return {-1, cur[1], cur[2]} end
    if ARGV[base + 1] ~= cur[1] or ARGV[base + 2] ~= cur[2] then return {-2, m} end
  elseif ARGV[base + 1] ~= '' then
    return {-2, m}
  end
end

for m = 1, n do
  local base = 8 + 3 * (m - 1)
  redis.call('HSET', KEYS[4 + m], 'v', ARGV[base], 'ts', ARGV[1], 'eid', eid)
end
redis.call('HSET', KEYS[2], 'ts', ARGV[1], 'eid', eid)
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('EXPIREAT', KEYS[4], ARGV[6])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[7])
return {1}
