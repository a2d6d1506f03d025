-- Apply one wave of events (no user and no item twice) to users AND items, atomically: the
-- single-server write of the events pipeline (`service.events.atomic`).
--
-- Because the whole wave runs as one script, every event is applied to its user's and its
-- items' states, sequence, counts and idempotency key together or not at all, and each
-- applied event was computed from exactly the states it replaced (the compare-and-set below).
-- Replicas therefore commit events one at a time in an order the server decides, and the
-- commit counter numbers that order: replaying the applied events serially in commit order
-- gives the same states.
--
-- KEYS[1]  the commit counter (a plain integer key)
-- KEYS[2..1+P]  sorted sets that count applied events per item (popularity fallbacks)
-- then per event, K = 3 + 2M keys: idempotency key, behaviour sequence, count bucket,
--          and per model m: the user's state hash, the item's state hash
-- ARGV[1]  M (models)   ARGV[2] sequence bound   ARGV[3] idempotency TTL (s)   ARGV[4] P
-- ARGV[5]  idle-user TTL (s): the user's sequence and states expire this long after their
--          last event (0: never)
-- then per event, A = 7 + 6M values: ts (decimal text), event id, sequence entry, action,
--          count bucket EXPIREAT (unix s), mode ('a' apply, 'v' verdict only: the caller saw a
--          newer event and computed nothing), item id, and per model m: new user state, ts and event id
--          of the user state it was computed from, new item state, ts and event id of the item
--          state it was computed from ('' = none)
--
-- Returns three values per event:
--   1, commit number, 0       applied
--   0, 0, 0                   duplicate (idempotency key present, or it is the user's newest)
--  -1, ts, event id           stale: the user already has this newer event
--  -2, m, side                conflict on model m's user (side 1) or item (side 2) state:
--                             another writer got in between; nothing written, recompute
-- An item whose state is already newer than the event keeps it (the user side is computed
-- from it, as the caller was told by its read).

local M = tonumber(ARGV[1])
local seq_max = tonumber(ARGV[2])
local ttl = ARGV[3]
local P = tonumber(ARGV[4])
local user_ttl = tonumber(ARGV[5])
local K, A = 3 + 2 * M, 7 + 6 * M
local n = (#KEYS - 1 - P) / K
local out = {}
local applied = {}

for e = 0, n - 1 do
  local kb, ab = 1 + P + e * K, 5 + e * A
  local ts_text, eid = ARGV[ab + 1], ARGV[ab + 2]
  local ts = tonumber(ts_text)
  local code, x, y = 1, 0, 0
  local write_item = {}
  -- The idempotency key is taken first (one call instead of a check and a set) and given
  -- back below when the event turns out stale or conflicting.
  if not redis.call('SET', KEYS[kb + 1], '1', 'NX', 'EX', ttl) then
    code = 0
  else
    local tail = redis.call('LINDEX', KEYS[kb + 2], -1)
    if tail then
      local lts, leid = entry_version(tail)
      local c = cmp(ts, eid, tonumber(lts), leid)
      if c == 0 then code = 0 elseif c < 0 then code, x, y = -1, lts, leid end
    end
    if code == 1 and ARGV[ab + 6] == 'v' then code, x, y = -2, 0, 0 end
    if code == 1 then
      for m = 1, M do
        local uk, ik = KEYS[kb + 2 + 2 * m], KEYS[kb + 3 + 2 * m]
        local mb = ab + 7 + 6 * (m - 1)
        local cu = redis.call('HMGET', uk, 'ts', 'eid')
        if cu[1] then
          local c = cmp(ts, eid, tonumber(cu[1]), cu[2])
          if c == 0 then code = 0 break end
          if c < 0 then code, x, y = -1, cu[1], cu[2] break end
          if ARGV[mb + 2] ~= cu[1] or ARGV[mb + 3] ~= cu[2] then code, x, y = -2, m, 1 break end
        elseif ARGV[mb + 2] ~= '' then
          code, x, y = -2, m, 1 break
        end
        local ci = redis.call('HMGET', ik, 'ts', 'eid')
        if ci[1] then
          if ARGV[mb + 5] ~= ci[1] or ARGV[mb + 6] ~= ci[2] then code, x, y = -2, m, 2 break end
          write_item[m] = cmp(ts, eid, tonumber(ci[1]), ci[2]) > 0
        elseif ARGV[mb + 5] ~= '' then
          code, x, y = -2, m, 2 break
        else
          write_item[m] = true
        end
      end
    end
    if code == 1 then
      for m = 1, M do
        local mb = ab + 7 + 6 * (m - 1)
        redis.call('HSET', KEYS[kb + 2 + 2 * m], 'v', ARGV[mb + 1], 'ts', ts_text, 'eid', eid)
        if write_item[m] then
          redis.call('HSET', KEYS[kb + 3 + 2 * m], 'v', ARGV[mb + 4], 'ts', ts_text, 'eid', eid)
        end
      end
      if redis.call('RPUSH', KEYS[kb + 2], ARGV[ab + 3]) > seq_max then
        redis.call('LTRIM', KEYS[kb + 2], -seq_max, -1)
      end
      if user_ttl > 0 then
        redis.call('EXPIRE', KEYS[kb + 2], user_ttl)
        for m = 1, M do redis.call('EXPIRE', KEYS[kb + 2 + 2 * m], user_ttl) end
      end
      if redis.call('HINCRBY', KEYS[kb + 3], ARGV[ab + 4], 1) == 1 then
        redis.call('EXPIREAT', KEYS[kb + 3], ARGV[ab + 5])
      end
      for p = 1, P do redis.call('ZINCRBY', KEYS[1 + p], 1, ARGV[ab + 7]) end
      applied[#applied + 1] = #out + 2
    else
      redis.call('DEL', KEYS[kb + 1])
    end
  end
  out[#out + 1] = code
  out[#out + 1] = x
  out[#out + 1] = y
end

if #applied > 0 then
  local last = redis.call('INCRBY', KEYS[1], #applied)
  for k, pos in ipairs(applied) do out[pos] = last - #applied + k end
end
return out
