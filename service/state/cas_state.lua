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
-- Event ids compare bytewise (Lua's < on strings follows the server's locale).

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
