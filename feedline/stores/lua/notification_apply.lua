-- notification_apply: apply one notification effect to a recipient's cached list
-- (schemas.redis_notifications: the ZSET is CAPPED; a missing ZSET means "not cached").
--
-- KEYS[1]  the recipient's groups ZSET                    (RedisKeys.notifications)
-- KEYS[2]  the recipient's group payloads HASH            (RedisKeys.notification_groups)
-- ARGV[1]  cap: most groups kept (the newest, by score then group key)
-- ARGV[2]  'upsert' or 'delete'
-- ARGV[3]  the group key
-- ARGV[4]  score: the group's latest_at (ms)               (upsert only)
-- ARGV[5]  payload (schemas.redis_notifications.encode_group) (upsert only)
-- Returns 1 when applied; 0 when the list is not cached (an upsert: rebuild it from the
-- CQL store); 2 when a full list lost a group (refill it from the CQL store, where the
-- group that moves up may only live).
local cap, key = tonumber(ARGV[1]), ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], key)
  if ARGV[2] == 'upsert' then return 0 end
  return 1
end
if ARGV[2] == 'delete' then
  local full = redis.call('ZCARD', KEYS[1]) >= cap
  local removed = redis.call('ZREM', KEYS[1], key)
  redis.call('HDEL', KEYS[2], key)
  if removed == 1 and full then return 2 end
  return 1
end
redis.call('ZADD', KEYS[1], ARGV[4], key)
redis.call('HSET', KEYS[2], key, ARGV[5])
local excess = redis.call('ZCARD', KEYS[1]) - cap
if excess > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], excess)  -- member, score, member, ...
  for i = 1, #popped, 2 do redis.call('HDEL', KEYS[2], popped[i]) end
end
return 1
