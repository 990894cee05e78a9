-- Shared by the cache scripts (prepended to each).
-- Key names: a value at P .. ':' .. key, its tags at P .. '-keytags:' .. key, a tag's index
-- (a sorted set of keys scored by their expiry in ms, +inf for none) at P .. '-tag:' .. tag.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A tag index lives as long as its longest-lived member.
local function fit_index_expiry(index)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #top == 0 then
    return
  end
  if top[2] == 'inf' then
    redis.call('PERSIST', index)
  else
    redis.call('PEXPIREAT', index, math.floor(tonumber(top[2])))
  end
end

-- Removes `key` (its value, its tag list, and its entries in its tags' indexes); 1 if its
-- value existed.
local function remove_key(base, key)
  local tags_key = base .. '-keytags:' .. key
  for _, tag in ipairs(redis.call('SMEMBERS', tags_key)) do
    redis.call('ZREM', base .. '-tag:' .. tag, key)
  end
  redis.call('DEL', tags_key)
  return redis.call('UNLINK', base .. ':' .. key)
end
