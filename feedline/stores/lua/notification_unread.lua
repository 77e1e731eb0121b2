-- notification_unread: how many of a recipient's visible groups are unread
-- (schemas.redis_notifications: derived, never stored).
--
-- KEYS[1]  groups ZSET of the recipient                    (RedisKeys.notifications)
-- KEYS[2]  read marker of the recipient                    (RedisKeys.notifications_read)
-- ARGV[1]  cap: groups a recipient sees
-- Returns {'miss'} when the ZSET is not cached, {'marker_miss'} when the marker is not,
-- else {'ok', count}: the groups newer than the marker, at most the cap (the unread
-- groups are the newest ones, so they are visible up to the cap).
if redis.call('EXISTS', KEYS[1]) == 0 then return {'miss'} end
local marker = redis.call('GET', KEYS[2])
if not marker then return {'marker_miss'} end
local count = redis.call('ZCOUNT', KEYS[1], '(' .. marker, '+inf')
return {'ok', math.min(count, tonumber(ARGV[1]))}
