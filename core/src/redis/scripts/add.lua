-- Adds jobs. KEYS[1]: K:id. ARGV[1]: K; then 14 values per job: custom id ("" for none), name,
-- data, opts (JSON), prio, lifo, attempts, delay_ms, backoff type, delay, jitter, max (-1 none),
-- retention on complete, retention on fail.
-- Returns id, created (1/0) per job.
local K = ARGV[1]
local now = now_ms()
local out = {}
local ready = false
local n = 14
for i = 2, #ARGV, n do
  local custom = ARGV[i]
  local id
  local created = 1
  if custom ~= '' and redis.call('EXISTS', jkey(K, custom)) == 1 then
    id = custom
    created = 0
  else
    if custom ~= '' then id = custom else id = tostring(redis.call('INCR', KEYS[1])) end
    local delay = tonumber(ARGV[i + 7])
    redis.call('HSET', jkey(K, id),
      'name', ARGV[i + 1], 'data', ARGV[i + 2], 'opts', ARGV[i + 3],
      'prio', ARGV[i + 4], 'lifo', ARGV[i + 5], 'att', ARGV[i + 6],
      'made', 0, 'stall', 0, 'rel', 0, 'created', now, 'run_at', now + delay,
      'bo_type', ARGV[i + 8], 'bo_delay', ARGV[i + 9], 'bo_jitter', ARGV[i + 10], 'bo_max', ARGV[i + 11],
      'roc', ARGV[i + 12], 'rof', ARGV[i + 13], 'progress', '0')
    if delay > 0 then
      redis.call('ZADD', K .. ':delayed', now + delay, id)
      redis.call('HSET', jkey(K, id), 'state', 'delayed')
    else
      place_ready(K, id)
    end
    event(K, id, 'added')
    ready = true
  end
  table.insert(out, id)
  table.insert(out, created)
end
if ready then signal(K) end
return out
