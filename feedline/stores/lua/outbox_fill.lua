-- outbox_fill: repair_outbox.lua's second half for Redis Cluster, on the author's slot:
-- cache an outbox read from the CQL store where none is cached (feedline.stores.cluster_cache,
-- after celebrities_complete.lua said the author is a celebrity).
--
-- The two halves are not atomic as repair_outbox.lua is: a writer that cleared the outbox
-- (its whole-key version, row '', newer than the read) wins; see cluster_cache's docstring
-- for what is left open.
--
-- KEYS[1]  outbox ZSET of the author                       (RedisKeys.outbox)
-- KEYS[2]  the outbox's versions HASH                      (RedisKeys.versions)
-- ARGV[1]  cap: most entries kept
-- ARGV[2]  when the CQL read began, µs since the epoch
-- ARGV[3 ..]  score, post id, score, post id, ...
-- Returns 1 when the outbox was written, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(redis.call('HGET', KEYS[2], '') or '0') >= tonumber(ARGV[2]) then return 0 end
if #ARGV < 3 then return 0 end
for i = 3, #ARGV, 400 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, #ARGV)))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
