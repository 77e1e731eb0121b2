-- claim: record the event id produced for an Idempotency-Key, unless one is recorded.
--
-- KEYS[1]  the idempotency key                             (RedisKeys.idempotency)
-- ARGV[1]  the value to record (the event and its response)
-- ARGV[2]  TTL, seconds
-- Returns the value recorded before, or false when this call recorded ARGV[1].
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
