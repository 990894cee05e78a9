-- Administration, one operation per call. KEYS[1]: K:id. ARGV: K, operation, arguments.
local K = ARGV[1]
local op = ARGV[2]
local now = now_ms()

if op == 'progress' then
  local id = ARGV[3]
  if redis.call('EXISTS', jkey(K, id)) == 0 then return 0 end
  redis.call('HSET', jkey(K, id), 'progress', ARGV[4])
  event(K, id, 'progress', 'value', ARGV[4])
  return 1
elseif op == 'log' then
  local id = ARGV[3]
  if redis.call('EXISTS', jkey(K, id)) == 0 then return 0 end
  redis.call('RPUSH', jkey(K, id) .. ':l', ARGV[4])
  redis.call('LTRIM', jkey(K, id) .. ':l', -tonumber(ARGV[5]), -1)
  return 1
elseif op == 'get' then
  return { redis.call('EXISTS', K .. ':paused'), read_job(K, ARGV[3]) }
elseif op == 'counts' then
  return {
    redis.call('LLEN', K .. ':wait'), redis.call('ZCARD', K .. ':active'),
    redis.call('ZCARD', K .. ':delayed'), redis.call('ZCARD', K .. ':prio'),
    redis.call('ZCARD', K .. ':completed'), redis.call('ZCARD', K .. ':failed'),
    redis.call('EXISTS', K .. ':paused') }
elseif op == 'list' then
  local state, offset, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local last = offset + limit - 1
  local ids
  if state == 'waiting' then ids = redis.call('LRANGE', K .. ':wait', offset, last)
  elseif state == 'prioritized' then ids = redis.call('ZRANGE', K .. ':prio', offset, last)
  elseif state == 'delayed' then ids = redis.call('ZRANGE', K .. ':delayed', offset, last)
  elseif state == 'active' then ids = redis.call('ZRANGE', K .. ':active', offset, last)
  elseif state == 'completed' then ids = redis.call('ZRANGE', K .. ':completed', offset, last, 'REV')
  elseif state == 'failed' then ids = redis.call('ZRANGE', K .. ':failed', offset, last, 'REV')
  else ids = {} end
  local out = {}
  for _, id in ipairs(ids) do
    local job = read_job(K, id)
    if job then table.insert(out, job) end
  end
  return { redis.call('EXISTS', K .. ':paused'), out }
elseif op == 'retry' then
  local id = ARGV[3]
  local state = redis.call('HGET', jkey(K, id), 'state')
  if not state then return 'missing' end
  if state ~= 'failed' then return state end
  unplace(K, id, state)
  redis.call('HSET', jkey(K, id), 'made', 0, 'stall', 0, 'rel', 0, 'run_at', now)
  redis.call('HDEL', jkey(K, id), 'reason', 'fin')
  place_ready(K, id)
  event(K, id, 'added')
  signal(K)
  return 'ok'
elseif op == 'remove' then
  local id = ARGV[3]
  local state = redis.call('HGET', jkey(K, id), 'state')
  if not state then return 'missing' end
  if state == 'active' then return state end
  unplace(K, id, state)
  delete_job(K, id)
  event(K, id, 'removed')
  return 'ok'
elseif op == 'clean' then
  local state, cutoff, limit = ARGV[3], now - tonumber(ARGV[4]), tonumber(ARGV[5])
  local victims = {}
  if state == 'completed' or state == 'failed' then
    victims = redis.call('ZRANGEBYSCORE', K .. ':' .. state, '-inf', cutoff, 'LIMIT', 0, limit)
  else
    local ids
    if state == 'waiting' then ids = redis.call('LRANGE', K .. ':wait', 0, -1)
    elseif state == 'prioritized' then ids = redis.call('ZRANGE', K .. ':prio', 0, -1)
    elseif state == 'delayed' then ids = redis.call('ZRANGE', K .. ':delayed', 0, -1)
    else ids = {} end
    for _, id in ipairs(ids) do
      if #victims >= limit then break end
      if tonumber(redis.call('HGET', jkey(K, id), 'created') or now) <= cutoff then table.insert(victims, id) end
    end
  end
  for _, id in ipairs(victims) do
    unplace(K, id, redis.call('HGET', jkey(K, id), 'state'))
    delete_job(K, id)
  end
  return #victims
elseif op == 'next_due' then
  local first = redis.call('ZRANGE', K .. ':delayed', 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
elseif op == 'paused' then
  return redis.call('EXISTS', K .. ':paused')
elseif op == 'pause' then
  redis.call('SET', K .. ':paused', '1')
  return 1
elseif op == 'resume' then
  redis.call('DEL', K .. ':paused')
  signal(K)
  return 1
elseif op == 'drain' then
  local n = 0
  local sets = { K .. ':wait', K .. ':prio' }
  if ARGV[3] == '1' then table.insert(sets, K .. ':delayed') end
  for _, key in ipairs(sets) do
    local ids
    if key == K .. ':wait' then ids = redis.call('LRANGE', key, 0, -1) else ids = redis.call('ZRANGE', key, 0, -1) end
    for _, id in ipairs(ids) do delete_job(K, id) end
    n = n + #ids
    redis.call('DEL', key)
  end
  return n
end
return redis.error_reply('unknown operation ' .. tostring(op))
