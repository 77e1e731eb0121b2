-- rate_check: the sliding-window rate-limit check, as a Lua function for other scripts.
--
-- rate_check(current_key, previous_key, limit, weight, ttl_ms) counts one request in the
-- current window's counter when ``previous * weight + current < limit`` and returns
-- {1, current, previous}; otherwise it counts nothing and returns {0, current, previous}.
-- Used by rate_limit.lua and page.lua (feedline.stores.request_guards, RateWindow).
local function rate_check(current_key, previous_key, limit, weight, ttl_ms)
  local current = tonumber(redis.call('GET', current_key) or '0')
  local previous = tonumber(redis.call('GET', previous_key) or '0')
  if previous * tonumber(weight) + current >= tonumber(limit) then
    return {0, current, previous}
  end
  current = redis.call('INCR', current_key)
  if current == 1 then redis.call('PEXPIRE', current_key, ttl_ms) end
  return {1, current, previous}
end
