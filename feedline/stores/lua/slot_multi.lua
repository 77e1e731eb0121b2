-- slot_multi: a MULTI/EXEC of plain writes on the keys of one Redis Cluster slot.
--
-- A cluster refuses a MULTI/EXEC over keys of many slots (CROSSSLOT), and redis-py's
-- cluster pipeline sends none at all. The writers' whole-key replacements (a rebuilt
-- timeline, outbox, notification list, a rebuild's hashes and their versions) go instead
-- as one call of this script per slot, all in one cluster pipeline
-- (feedline.stores.cluster_writes.SlotTransactions): each slot's commands run in their
-- order, atomically, as they would in one MULTI/EXEC.
--
-- KEYS[1 ..]  every key the commands name, all of one slot (a hash tag)
-- ARGV        the commands, one after another, each as:
--               name, index of its key in KEYS, n, then n arguments
--             name is DEL (n = 0), ZADD (score, member, ...), HSET (field, value, ...),
--             SADD or SREM (member, ...), or RENAME (one argument: the index in KEYS of
--             the new name).
-- Returns the number of commands run.
local variadic = {ZADD = true, HSET = true, SADD = true, SREM = true}
local i, done = 1, 0
while i <= #ARGV do
  local name, key, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + n
  if name == 'DEL' then
    redis.call('DEL', key)
  elseif name == 'RENAME' then
    redis.call('RENAME', key, KEYS[tonumber(ARGV[first])])
  elseif variadic[name] then
    -- In chunks: unpack is bounded by the Lua stack (400 keeps score/member pairs whole).
    for j = first, last, 400 do
      redis.call(name, key, unpack(ARGV, j, math.min(j + 399, last)))
    end
  else
    return redis.error_reply('slot_multi: unknown command ' .. tostring(name))
  end
  done = done + 1
  i = last + 1
end
return done
