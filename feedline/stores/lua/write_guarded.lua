-- write_guarded: one write to a cached key, applied only when newer than its row's version.
--
-- Every effect carries a write time (µs) that grows per row in event order
-- (feedline.rules.write_order). The key's versions hash keeps, per row (a member or a
-- field; '' stands for the whole key), the write time of the last write: a write at or
-- before max(version of its row, version of '') changes nothing, so a replayed or late
-- write can never put an older value back. Deletions leave their version behind.
--
-- KEYS[1]  the key written (a timeline, an outbox, a set or a hash)
-- KEYS[2]  its versions HASH                                (RedisKeys.versions)
-- ARGV[1]  the operation (below)
-- ARGV[2]  the row: the member or field written, '' for the whole key
-- ARGV[3]  the write time, µs
-- ARGV[4]  first argument of the operation (its arguments, by operation:
--          zadd_cached: cap, score, member — add to a capped sorted set only if it exists,
--                       a missing key meaning "not cached" (schemas.redis_sets);
--          zrem: member; del: none (the whole key goes); hset: field, value, field, ...;
--          hset_cached: field, value — set only if the hash exists, a missing hash
--                       meaning "not cached" (the caller fills it whole: fill_hash);
--          sadd: member; srem: member)
-- ARGV[5]  second argument (zadd_cached: the score; hset: the first value)
-- ARGV[6]  third argument (zadd_cached: the member)
-- Returns 0 for zadd_cached and hset_cached when the key is not cached, whatever the
-- version (the caller rebuilds or fills it from the CQL store); otherwise -1 when the
-- write is older than the row's version (nothing changed), else zadd_cached: 1 added;
-- zrem: the set's size before the removal; hset_cached and the others: 1.
--
-- fill_hash (ARGV[2] and ARGV[3] unused): a hash written whole where none is cached, from
-- the CQL store's row read after the caller's own writes to it. ARGV[4 ..] are triples
-- field, value, write time of the value in the CQL store (the fields the row holds; one
-- never written stays absent, read as 0); each field's version becomes at least that
-- write time. Returns 1 when written, 0 when a hash was cached meanwhile (left as it is).
local op, row, at = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ops = {zadd_cached = true, zrem = true, del = true, hset = true, hset_cached = true,
             sadd = true, srem = true, fill_hash = true}
if not ops[op] then return redis.error_reply('write_guarded: unknown operation ' .. op) end
if op == 'fill_hash' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  for i = 4, #ARGV, 3 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    local version = tonumber(ARGV[i + 2])
    if version > tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    end
  end
  return 1
end
local seen = tonumber(redis.call('HGET', KEYS[2], row) or '0')
if row ~= '' then
  seen = math.max(seen, tonumber(redis.call('HGET', KEYS[2], '') or '0'))
end
local cached = op == 'zadd_cached' or op == 'hset_cached'
if cached and redis.call('EXISTS', KEYS[1]) == 0 then
  -- Not cached, replayed or not: the caller rebuilds the key from the CQL store, which
  -- holds this write. A replay must say so too: the rebuild that followed the first
  -- write may never have run (the writer stopped between the two).
  if at > seen then redis.call('HSET', KEYS[2], row, ARGV[3]) end
  return 0
end
if at <= seen then return -1 end
redis.call('HSET', KEYS[2], row, ARGV[3])
if op == 'zadd_cached' then
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
  return 1
elseif op == 'zrem' then
  local size = redis.call('ZCARD', KEYS[1])
  redis.call('ZREM', KEYS[1], ARGV[4])
  return size
elseif op == 'del' then
  redis.call('DEL', KEYS[1])
elseif op == 'hset' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
elseif op == 'hset_cached' then
  redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
elseif op == 'sadd' then
  redis.call('SADD', KEYS[1], ARGV[4])
elseif op == 'srem' then
  redis.call('SREM', KEYS[1], ARGV[4])
end
return 1
