-- notification_repair: cache a recipient's newest groups read from the CQL store
-- (schemas.redis_notifications: the ZSET is CAPPED, a missing one is "not cached").
--
-- Written only where no ZSET is cached (a writer that cached one meanwhile wins).
--
-- KEYS[1]  groups ZSET of the recipient                    (RedisKeys.notifications)
-- KEYS[2]  group payloads HASH of the recipient            (RedisKeys.notification_groups)
-- ARGV[1]  cap: groups a recipient sees
-- ARGV[2 ..]  score, group key, payload, score, group key, payload, ... (newest first)
-- Returns 1 when written, else 0.
if #ARGV < 4 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 300 do
  local zargs, hargs = {}, {}
  for j = i, math.min(i + 299, #ARGV), 3 do
    zargs[#zargs + 1] = ARGV[j]
    zargs[#zargs + 1] = ARGV[j + 1]
    hargs[#hargs + 1] = ARGV[j + 1]
    hargs[#hargs + 1] = ARGV[j + 2]
  end
  redis.call('ZADD', KEYS[1], unpack(zargs))
  redis.call('HSET', KEYS[2], unpack(hargs))
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[1]) + 1))
return 1
