-- repair_outbox: cache a celebrity's outbox read from the CQL store, when it is not
-- cached and the author still is a celebrity (schemas.redis_sets: an outbox is COUNTED,
-- and kept only for celebrities).
--
-- KEYS[1]  outbox ZSET of the author                       (RedisKeys.outbox)
-- KEYS[2]  SET of celebrities                              (RedisKeys.celebrities)
-- ARGV[1]  cap: most entries kept
-- ARGV[2]  the author's id
-- ARGV[3 ..]  score, post id, score, post id, ...
-- Returns 1 when the outbox was written, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV, 400 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
