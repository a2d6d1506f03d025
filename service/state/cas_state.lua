-- Compare-and-set of one model state hash (an item's, or any single entity's state).
--
-- KEYS[1]  the state hash: v (float32 bytes), ts (event time, text), eid (event id)
-- ARGV[1]  ts of the event that produced the new state (decimal text)
-- ARGV[2]  event id
-- ARGV[3]  new state vector (float32 bytes)
-- ARGV[4]  ts text of the state the caller read and computed from ('' = no state)
-- ARGV[5]  event id of that state
--
-- Returns  1 written; 0 the stored state already comes from this very event (a retry);
--         -1 stale: the stored state is newer; -2 conflict: someone wrote in between.
--
-- Ordering first, then the version check: an older event must be reported as stale even
-- when the read was also outdated, so the caller does not recompute it for nothing.

local cur = redis.call('HMGET', KEYS[1], 'ts', 'eid')
if cur[1] then
  local c = cmp(tonumber(ARGV[1]), ARGV[2], tonumber(cur[1]), cur[2])
  if c == 0 then return 0 end
  if c < 0 then return -1 end
  if ARGV[4] ~= cur[1] or ARGV[5] ~= cur[2] then return -2 end
elseif ARGV[4] ~= '' then
  return -2
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'ts', ARGV[1], 'eid', ARGV[2])
return 1
