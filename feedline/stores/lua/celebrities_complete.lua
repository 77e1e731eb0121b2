-- celebrities_complete: repair_outbox.lua's first half for Redis Cluster, on the
-- celebrities set's slot: complete the set from the CQL store, then say whether the author
-- is a celebrity (feedline.stores.cluster_cache; outbox_fill.lua is the second half).
--
-- Each celebrity read from the CQL store is added unless a writer wrote that member after
-- the read began (its version in the set's versions hash, a write time in µs).
--
-- KEYS[1]  SET of celebrities                              (RedisKeys.celebrities)
-- KEYS[2]  the celebrities set's versions HASH             (RedisKeys.versions)
-- ARGV[1]  when the CQL read began, µs since the epoch
-- ARGV[2]  the author's id
-- ARGV[3 ..]  celebrities read from the CQL store
-- Returns 1 when the author is in the set afterwards, else 0.
local read_at = tonumber(ARGV[1])
for i = 3, #ARGV do
  if tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') < read_at then
    redis.call('SADD', KEYS[1], ARGV[i])
  end
end
return redis.call('SISMEMBER', KEYS[1], ARGV[2])
