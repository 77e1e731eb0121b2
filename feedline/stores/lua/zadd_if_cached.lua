-- zadd_if_cached: add members to a capped sorted set only if the set is cached.
--
-- A missing key means "not cached" (never built, or evicted): the writer then rebuilds the
-- whole set from the CQL store instead (schemas.redis_sets), so a partial set is never
-- taken for a whole one.
--
-- KEYS[1]  the sorted set (a timeline or an outbox)
-- ARGV[1]  cap: most entries kept (the newest)
-- ARGV[2 ..]  score, member, score, member, ...
-- Returns 1 when the set was cached and added to, else 0.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
