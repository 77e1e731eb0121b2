-- notification_mark: move a recipient's read marker forward, never back
-- (schemas.redis_notifications.marker_after), and keep it for a while.
--
-- The marker is a cached copy of the CQL row (written first): the TTL bounds how long a
-- copy a failed write left behind can be stale; a missing one is read from CQL again.
--
-- KEYS[1]  read marker of the recipient                    (RedisKeys.notifications_read)
-- ARGV[1]  the marker proposed (epoch ms)
-- ARGV[2]  TTL of the cached marker, ms
-- Returns the marker now stored.
local stored = tonumber(redis.call('GET', KEYS[1]) or '')
local proposed = tonumber(ARGV[1])
local marker = proposed
if stored and stored > proposed then marker = stored end
redis.call('SET', KEYS[1], string.format('%d', marker), 'PX', ARGV[2])
return marker
