-- requires: rate_check.lua window.lua
-- page_head: the reader's step of a feed page on Redis Cluster, on the reader's slot only.
--
-- The first of the cluster page's steps (feedline.stores.cluster_cache): counts the
-- request against the rate limit, then reads the timeline window after the cursor and the
-- followed-celebrity set, with page.lua's checks in page.lua's order. Every key is one of
-- the reader's, hash-tagged alike (schemas.redis_keys, cluster layout).
--
-- KEYS[1]  timeline ZSET of the reader                     (RedisKeys.timeline)
-- KEYS[2]  followed-celebrity SET of the reader            (RedisKeys.followed_celebrities)
-- KEYS[3]  rate-limit counter, current window  (optional; RedisKeys.rate_limit)
-- KEYS[4]  rate-limit counter, previous window (optional)
-- ARGV[1]  fetch: entries read in one go (limit plus slack)
-- ARGV[2]  timeline cap (a timeline below it is whole)
-- ARGV[3]  cursor score (created ms), '' for the first page
-- ARGV[4]  cursor post id
-- ARGV[5]  rate limit per window, '' for no rate limit (then KEYS[3..4] are absent)
-- ARGV[6]  rate-limit weight of the previous window
-- ARGV[7]  rate-limit counter TTL, ms
-- ARGV[8]  the completeness marker of the followed-celebrity set (COMPLETE_MEMBER)
--
-- Returns {'limited', current, previous}, {'miss'}, {'celebrities_miss'} (as page.lua), or
-- {'window', shape, {celebrity, ...}, {post_id, score, ...}} where shape is 'truncated'
-- (fetch entries read), 'whole' (the timeline holds nothing more) or 'part'.
if ARGV[5] ~= '' then
  local rate = rate_check(KEYS[3], KEYS[4], ARGV[5], ARGV[6], ARGV[7])
  if rate[1] == 0 then return {'limited', rate[2], rate[3]} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'miss'} end
if redis.call('SISMEMBER', KEYS[2], ARGV[8]) == 0 then return {'celebrities_miss'} end
local celebrities = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if member ~= ARGV[8] then celebrities[#celebrities + 1] = member end
end
local entries, truncated = window(KEYS[1], ARGV[3], ARGV[4], tonumber(ARGV[1]))
local shape = 'part'
if truncated then
  shape = 'truncated'
elseif redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  shape = 'whole'
end
return {'window', shape, celebrities, entries}
