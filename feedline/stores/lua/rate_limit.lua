-- requires: rate_check.lua
-- rate_limit: count one request against a user's sliding-window rate limit.
--
-- KEYS[1]  the current window's counter     (RedisKeys.rate_limit(user, window))
-- KEYS[2]  the previous window's counter    (RedisKeys.rate_limit(user, window - 1))
-- ARGV[1]  limit per window
-- ARGV[2]  weight of the previous window (share of the current window still to run)
-- ARGV[3]  counter TTL, ms
-- Returns {allowed (1 or 0), current count, previous count}.
return rate_check(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
