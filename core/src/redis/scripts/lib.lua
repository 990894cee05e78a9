-- Helpers every script starts with. K is the queue's key prefix, "stagehand:{queue}": every
-- key below shares its hash tag, so a script touches one slot (Redis Cluster).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function jkey(K, id) return K .. ':j:' .. id end

local function signal(K)
  redis.call('RPUSH', K .. ':signal', '1')
  redis.call('LTRIM', K .. ':signal', -16, -1)
end

local function event(K, id, kind, field, value)
  if field then
    redis.call('XADD', K .. ':events', 'MAXLEN', '~', 10000, '*', 'id', id, 'event', kind, field, value)
  else
    redis.call('XADD', K .. ':events', 'MAXLEN', '~', 10000, '*', 'id', id, 'event', kind)
  end
end

-- Puts a ready job in the waiting list (no priority) or the prioritized set.
local function place_ready(K, id)
  local jk = jkey(K, id)
  local prio = tonumber(redis.call('HGET', jk, 'prio') or '0')
  local lifo = redis.call('HGET', jk, 'lifo') == '1'
  if prio > 0 then
    local seq = redis.call('INCR', K .. ':seq') % 2147483647
    if lifo then seq = -seq end
    redis.call('ZADD', K .. ':prio', prio * 4294967296 + 2147483648 + seq, id)
    redis.call('HSET', jk, 'state', 'prioritized')
  else
    if lifo then redis.call('LPUSH', K .. ':wait', id) else redis.call('RPUSH', K .. ':wait', id) end
    redis.call('HSET', jk, 'state', 'waiting')
  end
end

-- Takes a job out of the structure its state keeps it in.
local function unplace(K, id, state)
  if state == 'waiting' then redis.call('LREM', K .. ':wait', 1, id)
  elseif state == 'prioritized' then redis.call('ZREM', K .. ':prio', id)
  elseif state == 'delayed' then redis.call('ZREM', K .. ':delayed', id)
  elseif state == 'active' then redis.call('ZREM', K .. ':active', id)
  elseif state == 'completed' then redis.call('ZREM', K .. ':completed', id)
  elseif state == 'failed' then redis.call('ZREM', K .. ':failed', id) end
end

local function delete_job(K, id)
  local jk = jkey(K, id)
  redis.call('DEL', jk, jk .. ':h', jk .. ':l')
end

-- Applies retention ("all", "remove" or "COUNT:AGE", -1 for none) to a finished set,
-- at most 1000 removals per call.
local function trim(K, set, spec, now)
  if spec == 'all' or spec == 'remove' or spec == nil then return end
  local count, age = string.match(spec, '^(-?%d+):(-?%d+)$')
  count = tonumber(count); age = tonumber(age)
  local key = K .. ':' .. set
  local budget = 1000
  if age and age >= 0 then
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. (now - age), 'LIMIT', 0, budget)
    for _, id in ipairs(old) do delete_job(K, id); redis.call('ZREM', key, id) end
    budget = budget - #old
  end
  if count and count >= 0 and budget > 0 then
    local over = redis.call('ZCARD', key) - count
    if over > 0 then
      local ids = redis.call('ZRANGE', key, 0, math.min(over, budget) - 1)
      for _, id in ipairs(ids) do delete_job(K, id); redis.call('ZREM', key, id) end
    end
  end
end

-- Ends the running attempt: appends its record to the job's history. (The running attempt
-- lives in the hash as a_start / a_worker; `made` is its number.)
local function end_attempt(K, id, now, outcome, err, retry_delay)
  local jk = jkey(K, id)
  local f = redis.call('HMGET', jk, 'made', 'a_start', 'a_worker')
  if not f[2] then return end
  redis.call('RPUSH', jk .. ':h', cjson.encode({
    attempt = tonumber(f[1]), worker = f[3], started_at = tonumber(f[2]), finished_at = now,
    outcome = outcome, error = err, retry_delay_ms = retry_delay }))
  redis.call('HDEL', jk, 'a_start', 'a_worker')
end

-- A job's fields (in the order codec.rs reads them), history and logs (unless without_logs),
-- as fetch, get and list return them.
local function read_job(K, id, without_logs)
  local jk = jkey(K, id)
  local fields = redis.call('HMGET', jk, 'state', 'name', 'data', 'opts', 'progress', 'made',
    'stall', 'rel', 'rv', 'reason', 'created', 'run_at', 'proc', 'fin', 'a_start', 'a_worker')
  if not fields[1] then return false end
  local logs = {}
  if not without_logs then logs = redis.call('LRANGE', jk .. ':l', 0, -1) end
  return { id, fields, redis.call('LRANGE', jk .. ':h', 0, -1), logs }
end

-- Fails a job for good: failed set, reason, retention. Returns the job as it ended (read
-- before its retention may remove it).
local function fail_for_good(K, id, reason, now)
  local jk = jkey(K, id)
  redis.call('HSET', jk, 'state', 'failed', 'reason', reason, 'fin', now)
  redis.call('HDEL', jk, 'tok')
  local ended = read_job(K, id)
  local keep = redis.call('HGET', jk, 'rof')
  event(K, id, 'failed', 'reason', reason)
  if keep == 'remove' then
    delete_job(K, id)
  else
    redis.call('ZADD', K .. ':failed', now, id)
    trim(K, 'failed', keep, now)
  end
  return ended
end

-- Settles the jobs described by ARGV[first..last], 6 values each: id, token, kind
-- ("completed" | "failed" | "released"), payload (the return value JSON, or the reason),
-- retry ("1" or "0"), jitter draw (0..1). Returns per job { answer, job }: answer
-- "completed" | "retrying:DELAY" | "failed" | "released" | "lost"; job is the job as it ended
-- for "failed", else false.
local function settle_items(K, active_key, first, last, now)
  local out = {}
  local woke = false
  for i = first, last, 6 do
    local id, token, kind, payload, retry, draw = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
    local jk = jkey(K, id)
    local state, tok = unpack(redis.call('HMGET', jk, 'state', 'tok'))
    if state ~= 'active' or tok ~= token then
      table.insert(out, { 'lost', false })
    else
      redis.call('ZREM', active_key, id)
      if kind == 'completed' then
        local keep = redis.call('HGET', jk, 'roc')
        event(K, id, 'completed')
        if keep == 'remove' then
          -- Nothing of it is kept, so nothing of it is written first.
          delete_job(K, id)
        else
          end_attempt(K, id, now, 'completed')
          redis.call('HSET', jk, 'state', 'completed', 'rv', payload, 'fin', now)
          redis.call('HDEL', jk, 'tok', 'reason')
          redis.call('ZADD', K .. ':completed', now, id)
          trim(K, 'completed', keep, now)
        end
        table.insert(out, { 'completed', false })
      elseif kind == 'released' then
        end_attempt(K, id, now, 'released')
        redis.call('HINCRBY', jk, 'rel', 1)
        redis.call('HDEL', jk, 'tok')
        place_ready(K, id)
        woke = true
        table.insert(out, { 'released', false })
      else
        local f = redis.call('HMGET', jk, 'made', 'stall', 'rel', 'att', 'bo_type', 'bo_delay', 'bo_jitter', 'bo_max')
        local used = tonumber(f[1]) - tonumber(f[2]) - tonumber(f[3])
        if retry == '1' and used < tonumber(f[4]) then
          local delay = tonumber(f[6])
          if f[5] == 'exponential' then
            delay = delay * 2 ^ math.min(used - 1, 62)
            local cap = tonumber(f[8])
            if cap >= 0 and delay > cap then delay = cap end
          end
          local jitter = math.min(tonumber(f[7]), 1)
          if jitter > 0 then delay = delay - math.floor(delay * jitter * draw) end
          delay = math.floor(delay)
          end_attempt(K, id, now, 'failed', payload, delay)
          redis.call('HSET', jk, 'reason', payload)
          redis.call('HDEL', jk, 'tok')
          if delay > 0 then
            redis.call('HSET', jk, 'state', 'delayed', 'run_at', now + delay)
            redis.call('ZADD', K .. ':delayed', now + delay, id)
          else
            place_ready(K, id)
          end
          woke = true
          event(K, id, 'retrying', 'delay_ms', delay)
          table.insert(out, { 'retrying:' .. delay, false })
        else
          end_attempt(K, id, now, 'failed', payload)
          if retry ~= '1' then payload = 'unrecoverable: ' .. payload end
          table.insert(out, { 'failed', fail_for_good(K, id, payload, now) })
        end
      end
    end
  end
  if woke then signal(K) end
  return out
end

-- Promotes due delayed jobs, then leases up to `max` ready jobs (waiting first, then by
-- priority). Returns, per job: { token, { id, fields, history, logs } }.
local function fetch_jobs(K, tok_key, worker, max, lease, now)
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
      local token = redis.call('INCR', tok_key)
      redis.call('HINCRBY', jk, 'made', 1)
      redis.call('HSET', jk, 'state', 'active', 'tok', token, 'proc', now, 'a_start', now, 'a_worker', worker)
      redis.call('ZADD', K .. ':active', now + lease, id)
      event(K, id, 'active')
      -- A processor reads its job's data and history; its own log lines it does not need.
      table.insert(out, { token, read_job(K, id, true) })
    end
  end
  return out
end
