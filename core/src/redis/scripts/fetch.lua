-- Promotes due delayed jobs, then leases up to ARGV[3] ready jobs (waiting first, then by
-- priority). KEYS[1]: K:tok. ARGV: K, worker, max, lease_ms.
-- Returns, per job: { token, { id, fields, history, logs } }.
local K = ARGV[1]
local worker = ARGV[2]
local max = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', K .. ':delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', K .. ':delayed', id)
  place_ready(K, id)
end
if redis.call('EXISTS', K .. ':paused') == 1 then return {} end
local out = {}
while #out < max do
  local id = redis.call('LPOP', K .. ':wait')
  if not id then
    local top = redis.call('ZPOPMIN', K .. ':prio')
    if #top == 0 then break end
    id = top[1]
  end
  local jk = jkey(K, id)
  if redis.call('EXISTS', jk) == 1 then
    local token = redis.call('INCR', KEYS[1])
    redis.call('HINCRBY', jk, 'made', 1)
    redis.call('HSET', jk, 'state', 'active', 'tok', token, 'proc', now, 'a_start', now, 'a_worker', worker)
    redis.call('ZADD', K .. ':active', now + lease, id)
    event(K, id, 'active')
    -- A processor reads its job's data and history; its own log lines it does not need.
    table.insert(out, { token, read_job(K, id, true) })
  end
end
return out
