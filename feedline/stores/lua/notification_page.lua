-- requires: byte_order.lua
-- notification_page: one page of a recipient's notification groups, newest first, with
-- their payloads and the read marker, in one call (schemas.redis_notifications).
--
-- The groups ZSET is CAPPED: a missing key means "not cached" (the caller reads the CQL
-- store and repairs it). Pages follow (latest_ms DESC, group_key DESC), the CQL clustering
-- order; nothing past the newest `cap` groups is served. Keys compared byte-wise (never
-- with `<`, which follows the server's locale collation).
--
-- KEYS[1]  groups ZSET of the recipient                    (RedisKeys.notifications)
-- KEYS[2]  group payloads HASH of the recipient            (RedisKeys.notification_groups)
-- KEYS[3]  read marker of the recipient                    (RedisKeys.notifications_read)
-- ARGV[1]  cap: groups a recipient sees
-- ARGV[2]  limit: groups wanted
-- ARGV[3]  cursor score (latest ms), '' for the first page
-- ARGV[4]  cursor group key
-- Returns {'miss'} when the ZSET is not cached, {'partial'} when a payload is missing,
-- else {'ok', marker or '', more ('1' or '0'), key, score, payload, key, score, ...}.

if redis.call('EXISTS', KEYS[1]) == 0 then return {'miss'} end
local cap, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local found = {}
local newer = 0
local function take(reply)
  for i = 1, #reply, 2 do found[#found + 1] = {reply[i], reply[i + 1]} end
end
if ARGV[3] == '' then
  take(redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit + 1,
                  'WITHSCORES'))
else
  local score, key = ARGV[3], ARGV[4]
  newer = redis.call('ZCOUNT', KEYS[1], '(' .. score, '+inf')
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], score, score, 'BYSCORE', 'REV')) do
    if lt(member, key) then found[#found + 1] = {member, score} else newer = newer + 1 end
  end
  if #found <= limit then
    take(redis.call('ZRANGE', KEYS[1], '(' .. score, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0,
                    limit + 1 - #found, 'WITHSCORES'))
  end
end
local room = math.max(0, cap - newer)
local serve = math.min(#found, limit, room)
local more = (#found > limit and room > limit) and '1' or '0'
local marker = redis.call('GET', KEYS[3]) or ''
local out = {'ok', marker, more}
if serve == 0 then return out end
local members = {}
for i = 1, serve do members[i] = found[i][1] end
local payloads = redis.call('HMGET', KEYS[2], unpack(members))
for i = 1, serve do
  if not payloads[i] then return {'partial'} end
  out[#out + 1] = found[i][1]
  out[#out + 1] = found[i][2]
  out[#out + 1] = payloads[i]
end
return out
