-- Take or keep the event log's writer lease (`service.events.log_applier`): set it when
-- nobody holds it, extend it when this token holds it, otherwise leave it alone.
-- KEYS[1] the lease   ARGV[1] token   ARGV[2] lease time (ms)
-- Returns 1 when the caller holds the lease afterwards, 0 when another writer does.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
