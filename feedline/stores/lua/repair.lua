-- repair: cache a reader's timeline read from the CQL store, and complete the reader's
-- followed-celebrity set (schemas.redis_sets: the timeline is CAPPED, the set MARKED).
--
-- The timeline is written only where none is cached (a concurrent writer that rebuilt the
-- key meanwhile wins). The set is completed unless it is marked complete already: the
-- celebrities read from the CQL store are added with the marker (a union, so a celebrity
-- the writer added meanwhile stays).
--
-- KEYS[1]  timeline ZSET of the reader                     (RedisKeys.timeline)
-- KEYS[2]  followed-celebrity SET of the reader            (RedisKeys.followed_celebrities)
-- ARGV[1]  timeline cap
-- ARGV[2]  n: timeline entries that follow (0: only complete the set)
-- ARGV[3 .. 2 + 2n]          score, post id, score, post id, ... (newest first)
-- ARGV[3 + 2n]               the completeness marker (COMPLETE_MEMBER)
-- ARGV[4 + 2n ..]            the celebrities the reader follows
-- Returns 1 when the timeline was written, else 0.
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local wrote = 0
if n > 0 and redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 3, 2 + 2 * n, 400 do
    redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 399, 2 + 2 * n)))
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(cap + 1))
  wrote = 1
end
if redis.call('SISMEMBER', KEYS[2], ARGV[3 + 2 * n]) == 0 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 3 + 2 * n))
end
return wrote
