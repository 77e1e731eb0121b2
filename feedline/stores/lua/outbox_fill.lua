-- outbox_fill: repair_outbox.lua's second half for Redis Cluster, on the author's slot:
-- cache an outbox read from the CQL store where none is cached (feedline.stores.cluster_cache,
-- after celebrities_complete.lua said the author is a celebrity).
--
-- The two halves are not atomic as repair_outbox.lua is: a writer that cleared the outbox
-- (its whole-key version, row '', newer than the read) wins, and so does a writer that
-- dropped it since the read began (the author left the celebrities: FeedWriter._reload
-- leaves the drop's time in the field ARGV[3], schemas.redis_keys.DROPPED_FIELD).
--
-- KEYS[1]  outbox ZSET of the author                       (RedisKeys.outbox)
-- KEYS[2]  the outbox's versions HASH                      (RedisKeys.versions)
-- ARGV[1]  cap: most entries kept
-- ARGV[2]  when the CQL read began, µs since the epoch
-- ARGV[3]  the versions hash's field holding when the writer last dropped the outbox
-- ARGV[4 ..]  score, post id, score, post id, ...
-- Returns 1 when the outbox was written, else 0.
local read_at = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(redis.call('HGET', KEYS[2], '') or '0') >= read_at then return 0 end
if tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0') >= read_at then return 0 end
if #ARGV < 4 then return 0 end
for i = 4, #ARGV, 400 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
