-- claim: record the event produced for an Idempotency-Key, unless one is recorded, keeping
-- at most a bounded number of recorded keys per user.
--
-- KEYS[1]  the idempotency key                             (RedisKeys.idempotency)
-- KEYS[2]  the user's index of recorded keys: a ZSET of idempotency keys scored by their
--          expiry (ms)                                     (IdempotencyRecords.index_key)
-- ARGV[1]  the value to record (the event and its response)
-- ARGV[2]  TTL, seconds
-- ARGV[3]  now, ms
-- ARGV[4]  most keys recorded per user: past it the user's oldest record is dropped
-- Returns the value recorded before, or false when this call recorded ARGV[1].
local found = redis.call('GET', KEYS[1])
if found then return found end
local now, ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- records expired by themselves
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4]) + 1
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], excess)  -- member, score, member, ...
  for i = 1, #popped, 2 do redis.call('DEL', popped[i]) end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl_ms)
redis.call('ZADD', KEYS[2], now + ttl_ms, KEYS[1])
redis.call('PEXPIRE', KEYS[2], ttl_ms)
return false
