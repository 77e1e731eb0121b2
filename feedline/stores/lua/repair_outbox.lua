-- repair_outbox: cache a celebrity's outbox read from the CQL store, when it is not
-- cached and the author still is a celebrity (schemas.redis_sets: an outbox is COUNTED,
-- and kept only for celebrities).
--
-- The celebrities set is completed first: Redis may have lost it (a restart, an eviction)
-- and the writer only adds and removes members as authors cross the threshold. Each
-- celebrity read from the CQL store is added unless a writer wrote that member after the
-- read began (its version in the set's versions hash, a write time in µs like the read's
-- start: the writer's word is then newer than what the read saw).
--
-- KEYS[1]  outbox ZSET of the author                       (RedisKeys.outbox)
-- KEYS[2]  SET of celebrities                              (RedisKeys.celebrities)
-- KEYS[3]  the celebrities set's versions HASH             (RedisKeys.versions)
-- ARGV[1]  cap: most entries kept
-- ARGV[2]  the author's id
-- ARGV[3]  when the CQL read began, µs since the epoch
-- ARGV[4]  n: celebrities read from the CQL store that follow
-- ARGV[5 .. 4 + n]            those celebrities
-- ARGV[5 + n ..]              score, post id, score, post id, ...
-- Returns 1 when the outbox was written, else 0.
local read_at, n = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 5, 4 + n do
  if tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0') < read_at then
    redis.call('SADD', KEYS[2], ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return 0 end
local first = 5 + n
if first > #ARGV then return 0 end
for i = first, #ARGV, 400 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
