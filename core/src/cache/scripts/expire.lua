-- Gives a key a new time to live, its tag list and index entries too; 1 if it existed.
-- ARGV: base, key, ttl ms.
local base, key, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('PEXPIRE', base .. ':' .. key, ttl) == 0 then
  return 0
end
local tags_key = base .. '-keytags:' .. key
local tags = redis.call('SMEMBERS', tags_key)
if #tags > 0 then
  redis.call('PEXPIRE', tags_key, ttl)
  local at = now_ms() + ttl
  for _, tag in ipairs(tags) do
    local index = base .. '-tag:' .. tag
    redis.call('ZADD', index, 'XX', at, key)
    fit_index_expiry(index)
  end
end
return 1
