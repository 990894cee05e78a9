-- Stores a value, replacing its tags.
-- ARGV: base, key, JSON text, ttl ms (0: none), tags...
local base, key, text, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local tags_key = base .. '-keytags:' .. key
local keep = {}
for i = 5, #ARGV do
  keep[ARGV[i]] = true
end
for _, old in ipairs(redis.call('SMEMBERS', tags_key)) do
  if not keep[old] then
    redis.call('ZREM', base .. '-tag:' .. old, key)
  end
end
if ttl > 0 then
  redis.call('SET', base .. ':' .. key, text, 'PX', ttl)
else
  redis.call('SET', base .. ':' .. key, text)
end
redis.call('DEL', tags_key)
if #ARGV < 5 then
  return 1
end
local now = now_ms()
local score = '+inf'
if ttl > 0 then
  score = now + ttl
end
for i = 5, #ARGV do
  redis.call('SADD', tags_key, ARGV[i])
  local index = base .. '-tag:' .. ARGV[i]
  redis.call('ZADD', index, score, key)
  -- Reap a bounded number of members whose values have expired.
  local gone = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, 64)
  if #gone > 0 then
    redis.call('ZREM', index, unpack(gone))
  end
  fit_index_expiry(index)
end
if ttl > 0 then
  redis.call('PEXPIRE', tags_key, ttl)
end
return 1
