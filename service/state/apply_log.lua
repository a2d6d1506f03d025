-- Write what the log applier computed from one chunk of the event log, atomically, if and
-- only if this writer still holds the log and the chunk follows the last one written
-- (`service.events.log_applier`).
--
-- The two checks are the fence of the single-writer design: a writer that paused past its
-- lease, or whose earlier chunk failed, writes nothing; and because the chunk's states and
-- the applied mark move together, a crash leaves the store at a chunk boundary, from which
-- the next holder continues without applying anything twice.
--
-- KEYS[1]  the lease   KEYS[2] the applied mark (the commit number of the last applied entry)
-- KEYS[3]  the log stream   KEYS[4..3+P] popularity sorted sets
-- then per written state, 1 key: the state hash
-- ARGV[1]  the writer's token   ARGV[2] the applied mark the chunk starts after ('' = none)
-- ARGV[3]  the chunk's last commit number   ARGV[4] P   ARGV[5] idle-user TTL (s, 0: never)
-- ARGV[6]  S (written states)   ARGV[7] C (item counts)
-- then per state, 4 values: vector bytes, ts text, event id, 'u' (user: TTL) or 'i'
-- then per item count, 2 values: item id, events of the chunk on it
--
-- Returns 1 when written, -1 when the lease is another's (or gone), -2 when the applied mark
-- is not ARGV[2] (nothing written either way).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local mark = redis.call('GET', KEYS[2]) or ''
if mark ~= ARGV[2] then return -2 end
local P, user_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local S, C = tonumber(ARGV[6]), tonumber(ARGV[7])
for s = 0, S - 1 do
  local key, a = KEYS[4 + P + s], 7 + 4 * s
  redis.call('HSET', key, 'v', ARGV[a + 1], 'ts', ARGV[a + 2], 'eid', ARGV[a + 3])
  if user_ttl > 0 and ARGV[a + 4] == 'u' then redis.call('EXPIRE', key, user_ttl) end
end
local cb = 7 + 4 * S
for c = 0, C - 1 do
  for p = 1, P do redis.call('ZINCRBY', KEYS[3 + p], ARGV[cb + 2 * c + 2], ARGV[cb + 2 * c + 1]) end
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('XTRIM', KEYS[3], 'MINID', (tonumber(ARGV[3]) + 1) .. '-0')
return 1
