-- Administration, one operation per call. KEYS[1]: K:id. ARGV: K, operation, arguments.
-- Operations: progress, log, get, counts, list, retry, retry_failed, remove, clean, next_due,
-- paused, pause, resume, drain (each one's arguments are given where it is handled).
local K = ARGV[1]
local op = ARGV[2]
local now = now_ms()
-- The most jobs one bounded step (clean, drain) looks at.
local CHUNK = 1000

-- What is read is right when read, whether or not a pool fetches from this queue: reads first
-- promote delayed jobs that fell due (a bounded step each; a backlog of more than 10,000 due
-- jobs reads as delayed until fetches catch up).
if op == 'get' or op == 'counts' or op == 'list' then
  for _ = 1, 10 do
    if promote_due(K, now) < 1000 then break end
  end
end
-- What marks a waiting job's place for removal (no job id holds a control character).
local GONE = '\0gone'

-- Sends a failed job (already out of the failed set) back to ready: a fresh attempt budget,
-- no reason or finish time, ready now; its history is kept. As `Job::reset_for_retry`.
local function retry_job(K, id)
  rcall('HSET', jkey(K, id), 'made', 0, 'stall', 0, 'rel', 0, 'run_at', now)
  rcall('HDEL', jkey(K, id), 'reason', 'fin')
  place_ready(K, id)
end

if op == 'progress' then
  local id = ARGV[3]
  if rcall('EXISTS', jkey(K, id)) == 0 then return 0 end
  rcall('HSET', jkey(K, id), 'progress', ARGV[4])
  event(K, id, 'progress', 'value', ARGV[4])
  return 1
elseif op == 'log' then
  local id = ARGV[3]
  if rcall('EXISTS', jkey(K, id)) == 0 then return 0 end
  -- `logged` tells settling that there is a log list to delete with the job.
  rcall('HSET', jkey(K, id), 'logged', '1')
  rcall('RPUSH', lkey(K, id), ARGV[4])
  rcall('LTRIM', lkey(K, id), -tonumber(ARGV[5]), -1)
  return 1
elseif op == 'get' then
  return { rcall('EXISTS', K .. KEY.paused), read_job(K, ARGV[3]) }
elseif op == 'counts' then
  return {
    rcall('LLEN', K .. KEY.wait), rcall('ZCARD', K .. KEY.active),
    rcall('ZCARD', K .. KEY.delayed), rcall('ZCARD', K .. KEY.prio),
    rcall('ZCARD', K .. KEY.completed), rcall('ZCARD', K .. KEY.failed),
    rcall('EXISTS', K .. KEY.paused) }
elseif op == 'list' then
  local state, offset, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local last = offset + limit - 1
  local ids
  if state == 'waiting' then ids = rcall('LRANGE', K .. KEY.wait, offset, last)
  elseif state == 'prioritized' then ids = rcall('ZRANGE', K .. KEY.prio, offset, last)
  elseif state == 'delayed' then ids = rcall('ZRANGE', K .. KEY.delayed, offset, last)
  elseif state == 'active' then ids = rcall('ZRANGE', K .. KEY.active, offset, last)
  elseif state == 'completed' then ids = rcall('ZRANGE', K .. KEY.completed, offset, last, 'REV')
  elseif state == 'failed' then ids = rcall('ZRANGE', K .. KEY.failed, offset, last, 'REV')
  else ids = {} end
  local out = {}
  for _, id in ipairs(ids) do
    local job = read_job(K, id)
    if job then table.insert(out, job) end
  end
  return { rcall('EXISTS', K .. KEY.paused), out }
elseif op == 'retry' then
  local id = ARGV[3]
  local state = rcall('HGET', jkey(K, id), 'state')
  if not state then return 'missing' end
  if state ~= 'failed' then return state end
  unplace(K, id, state)
  retry_job(K, id)
  event(K, id, 'added')
  signal(K)
  return 'ok'
elseif op == 'retry_failed' then
  -- One bounded step: moves the first ARGV[3] (at most CHUNK) jobs of the failed set, those
  -- that failed first, back to ready. Returns { moved, 1 if failed jobs remain }.
  local limit = math.min(tonumber(ARGV[3]), CHUNK)
  local ids = {}
  if limit > 0 then ids = rcall('ZRANGE', K .. KEY.failed, 0, limit - 1) end
  call_chunked('ZREM', K .. KEY.failed, ids)
  local moved = {}
  for _, id in ipairs(ids) do
    -- A set member whose job is gone is dropped, not revived as an empty job.
    if rcall('EXISTS', jkey(K, id)) == 1 then
      retry_job(K, id)
      moved[#moved + 1] = id
    end
  end
  events(K, moved, 'added')
  if #moved > 0 then signal(K) end
  local left = 0
  if rcall('ZCARD', K .. KEY.failed) > 0 then left = 1 end
  return { #moved, left }
elseif op == 'remove' then
  local id = ARGV[3]
  local state = rcall('HGET', jkey(K, id), 'state')
  if not state then return 'missing' end
  if state == 'active' then return state end
  unplace(K, id, state)
  delete_job(K, id)
  event(K, id, 'removed')
  return 'ok'
elseif op == 'clean' then
  -- One bounded step: at most CHUNK jobs looked at or removed. ARGV: state, age_ms, limit,
  -- cursor (a position in the waiting list or a set). Returns { removed, next cursor or -1 }.
  local state, cutoff, cursor = ARGV[3], now - tonumber(ARGV[4]), tonumber(ARGV[6])
  local limit = math.min(tonumber(ARGV[5]), CHUNK)
  if state == 'completed' or state == 'failed' then
    local key = K .. KEY[state]
    local victims = rcall('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, limit)
    for _, id in ipairs(victims) do delete_job(K, id) end
    call_chunked('ZREM', key, victims)
    if #victims < limit then return { #victims, -1 } end
    return { #victims, 0 }
  end
  local key, window
  if state == 'waiting' then
    key = K .. KEY.wait
    window = rcall('LRANGE', key, cursor, cursor + CHUNK - 1)
  elseif state == 'prioritized' or state == 'delayed' then
    if state == 'prioritized' then key = K .. KEY.prio else key = K .. KEY.delayed end
    window = rcall('ZRANGE', key, cursor, cursor + CHUNK - 1)
  else
    return { 0, -1 }
  end
  local victims = {}
  for i, id in ipairs(window) do
    if #victims >= limit then break end
    if tonumber(rcall('HGET', jkey(K, id), 'created') or now) <= cutoff then
      victims[#victims + 1] = id
      -- A waiting job's place is marked, and every mark goes in one pass below.
      if key == K .. KEY.wait then rcall('LSET', key, cursor + i - 1, GONE) end
    end
  end
  for _, id in ipairs(victims) do delete_job(K, id) end
  if key == K .. KEY.wait then rcall('LREM', key, 0, GONE) else call_chunked('ZREM', key, victims) end
  if #window < CHUNK then return { #victims, -1 } end
  return { #victims, cursor + #window - #victims }
elseif op == 'next_due' then
  -- A paused queue's workers have nothing due: they wait for the resume.
  if rcall('EXISTS', K .. KEY.paused) == 1 then return -1 end
  local first = rcall('ZRANGE', K .. KEY.delayed, 0, 0, 'WITHSCORES')
  if #first == 0 then return -1 end
  return math.max(0, tonumber(first[2]) - now)
elseif op == 'paused' then
  return rcall('EXISTS', K .. KEY.paused)
elseif op == 'pause' then
  rcall('SET', K .. KEY.paused, '1')
  return 1
elseif op == 'resume' then
  rcall('DEL', K .. KEY.paused)
  signal(K)
  return 1
elseif op == 'drain' then
  -- One bounded step: removes up to ARGV[4] (at most CHUNK) waiting, then prioritized (and,
  -- if ARGV[3] is '1', delayed) jobs. Returns { removed, 1 if some are left }.
  local step = math.min(tonumber(ARGV[4]), CHUNK)
  local budget = step
  local sets = { K .. KEY.wait, K .. KEY.prio }
  if ARGV[3] == '1' then table.insert(sets, K .. KEY.delayed) end
  for _, key in ipairs(sets) do
    if budget > 0 then
      local ids
      if key == K .. KEY.wait then
        ids = rcall('LRANGE', key, 0, budget - 1)
        rcall('LTRIM', key, #ids, -1)
      else
        ids = rcall('ZRANGE', key, 0, budget - 1)
        if #ids > 0 then rcall('ZREMRANGEBYRANK', key, 0, #ids - 1) end
      end
      for _, id in ipairs(ids) do delete_job(K, id) end
      budget = budget - #ids
    end
  end
  local left = 0
  for _, key in ipairs(sets) do
    local n
    if key == K .. KEY.wait then n = rcall('LLEN', key) else n = rcall('ZCARD', key) end
    if n > 0 then left = 1 end
  end
  return { step - budget, left }
end
return redis.error_reply('unknown operation ' .. tostring(op))
