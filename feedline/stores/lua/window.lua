-- requires: byte_order.lua
-- window: a function for other scripts reading a newest-first slice of a sorted set.
--
-- window(key, cursor_score, cursor_id, fetch): up to ``fetch`` members of ``key`` strictly
-- after the cursor in newest-first order (score descending, then member bytes descending);
-- ``cursor_score`` is '' for the first page. Returns a flat list member, score, member,
-- score, ... (scores as text) and whether ``fetch`` entries were read (more may follow).
-- Used by page_head.lua and page_outbox.lua (feedline.stores.cluster_cache); page.lua
-- holds the same walk for the single-node page.
local function window(key, cursor_score, cursor_id, fetch)
  local out, n, rest = {}, 0, nil
  if cursor_score ~= '' then
    local tied = redis.call('ZRANGEBYSCORE', key, cursor_score, cursor_score)
    for i = #tied, 1, -1 do
      if lt(tied[i], cursor_id) then
        out[#out + 1], out[#out + 2] = tied[i], cursor_score
        n = n + 1
        if n >= fetch then return out, true end
      end
    end
    rest = redis.call('ZREVRANGEBYSCORE', key, '(' .. cursor_score, '-inf', 'WITHSCORES',
                      'LIMIT', 0, fetch - n)
  else
    rest = redis.call('ZREVRANGE', key, 0, fetch - 1, 'WITHSCORES')
  end
  for i = 1, #rest do out[#out + 1] = rest[i] end
  return out, n + #rest / 2 >= fetch
end
