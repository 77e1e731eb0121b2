-- requires: window.lua
-- page_outbox: one followed celebrity's step of a feed page on Redis Cluster.
--
-- The second of the cluster page's steps (feedline.stores.cluster_cache), one call per
-- celebrity the reader follows, pipelined per node: the outbox window after the cursor,
-- with page.lua's checks of that outbox. The outbox and the author's counters share the
-- author's hash tag (schemas.redis_keys, cluster layout).
--
-- KEYS[1]  outbox ZSET of the author                       (RedisKeys.outbox)
-- KEYS[2]  user counters HASH of the author                (RedisKeys.user_counters)
-- ARGV[1]  fetch: entries read in one go
-- ARGV[2]  cursor score (created ms), '' for the first page
-- ARGV[3]  cursor post id
-- ARGV[4]  '1': lenient (an outbox not cached is skipped, never reported absent)
-- ARGV[5]  user counters field counting the author's live posts ('posts')
--
-- Returns {'absent'} (not cached, and the author may have posts), {'skip'} (not cached,
-- and the author has none, or lenient), or {'window', shape, {post_id, score, ...}} with
-- shape as page_head.lua's: an outbox is whole when it holds at least the author's live
-- posts (schemas.redis_sets: COUNTED).
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[4] == '1' then return {'skip'} end
  local posts = redis.call('HGET', KEYS[2], ARGV[5])
  if (posts and posts ~= '0') or (not posts and redis.call('EXISTS', KEYS[2]) == 0) then
    return {'absent'}
  end
  return {'skip'}
end
local entries, truncated = window(KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[1]))
local shape = 'part'
if truncated then
  shape = 'truncated'
else
  local posts = redis.call('HGET', KEYS[2], ARGV[5])
  if posts ~= false and redis.call('ZCARD', KEYS[1]) >= tonumber(posts) then
    shape = 'whole'
  end
end
return {'window', shape, entries}
