-- Apply one event to everything of its user, atomically, in the user's slot. This is the
-- user half of the two-step write that Redis Cluster needs (an item's keys live in another
-- slot); on a single server `apply_wave.lua` writes both halves in one script.
--
-- KEYS[1]  idempotency key of the event      KEYS[2]  the behaviour sequence list
-- KEYS[3]  the count bucket hash             KEYS[4..] one state hash per model (may be none)
-- ARGV[1]  event ts (decimal text)   ARGV[2] event id     ARGV[3] sequence entry
-- ARGV[4]  sequence bound            ARGV[5] action       ARGV[6] count bucket EXPIREAT (unix s)
-- ARGV[7]  idempotency TTL (s)     ARGV[8] idle-user TTL (s) of the sequence and states (0: never)
-- ARGV[9+3(m-1)], +1, +2  per model m: new state (float32 bytes), ts and event id of the
--          state the caller computed from ('' = none)
--
-- Returns {1} applied; {0} duplicate (idempotency key present, or this very event is the
-- user's newest); {-1, ts, eid} stale (the user already has a newer event);
-- {-2, m} conflict on model m's state (another writer got in between: re-read, recompute).
--
-- The user's newest applied event is the tail of the sequence (entries carry the event id).
-- Nothing is written unless every check passes, so an event is applied to the user's
-- state, sequence, counts and idempotency key all together or not at all.

if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end

local ts, eid = tonumber(ARGV[1]), ARGV[2]
local tail = redis.call('LINDEX', KEYS[2], -1)
if tail then
  local lts, leid = entry_version(tail)
  local c = cmp(ts, eid, tonumber(lts), leid)
  if c == 0 then return {0} end
  if c < 0 then return {-1, lts, leid} end
end

local n = #KEYS - 3
for m = 1, n do
  local base = 9 + 3 * (m - 1)
  local cur = redis.call('HMGET', KEYS[3 + m], 'ts', 'eid')
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
  local base = 9 + 3 * (m - 1)
  redis.call('HSET', KEYS[3 + m], 'v', ARGV[base], 'ts', ARGV[1], 'eid', eid)
end
if redis.call('RPUSH', KEYS[2], ARGV[3]) > tonumber(ARGV[4]) then
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
end
local user_ttl = tonumber(ARGV[8])
if user_ttl > 0 then
  redis.call('EXPIRE', KEYS[2], user_ttl)
  for m = 1, n do redis.call('EXPIRE', KEYS[3 + m], user_ttl) end
end
if redis.call('HINCRBY', KEYS[3], ARGV[5], 1) == 1 then
  redis.call('EXPIREAT', KEYS[3], ARGV[6])
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[7])
return {1}
