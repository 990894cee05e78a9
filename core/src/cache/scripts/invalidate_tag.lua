-- Deletes up to a batch of the keys in a tag's index that still carry the tag.
-- ARGV: base, tag, batch size. Returns {deleted, members left in the index}.
local base, tag, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local index = base .. '-tag:' .. tag
local members = redis.call('ZRANGE', index, 0, batch - 1)
local deleted = 0
for _, key in ipairs(members) do
  redis.call('ZREM', index, key)
  if redis.call('SISMEMBER', base .. '-keytags:' .. key, tag) == 1 then
    deleted = deleted + remove_key(base, key)
  end
end
return {deleted, redis.call('ZCARD', index)}
