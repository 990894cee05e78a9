-- Helpers every script starts with. K is the queue's key prefix, "stagehand:{queue}": every
-- key below shares its hash tag, so a script touches one slot (Redis Cluster).
local rcall = redis.call
local function now_ms()
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end


-- Wakes one waiting worker (see signal.rs), unless the queue is paused: a paused queue's
-- workers can take nothing, so they wait for the resume, which signals.
local function signal(K)
  if rcall('EXISTS', K .. KEY.paused) == 1 then return end
  rcall('RPUSH', K .. KEY.signal, '1')
  rcall('LTRIM', K .. KEY.signal, -16, -1)
end

-- Appends one entry to the events stream, which keeps about 10,000 entries.
local function xadd(K, ...)
  rcall('XADD', K .. KEY.events, 'MAXLEN', '~', 10000, '*', ...)
end

-- One job's event, with one extra field if given.
local function event(K, id, kind, field, value)
  if field then xadd(K, 'id', id, 'event', kind, field, value) else xadd(K, 'id', id, 'event', kind) end
end

-- Events for many jobs: one entry per EVENT_IDS jobs, their ids joined by newlines (ids hold
-- no control characters), so the stream holds at most about 500,000 job events however the
-- jobs were batched.
local EVENT_IDS = 50
local function events(K, ids, kind)
  for i = 1, #ids, EVENT_IDS do
    local ids_here = table.concat(ids, '\n', i, math.min(i + EVENT_IDS - 1, #ids))
    xadd(K, 'ids', ids_here, 'event', kind)
  end
end

-- Runs `cmd [key] values...` in chunks, so a long list stays within Lua's argument limit
-- (key nil: the values are the keys, as for DEL).
local function call_chunked(cmd, key, values)
  local step = 1000
  for i = 1, #values, step do
    local last = math.min(i + step - 1, #values)
    if key then rcall(cmd, key, unpack(values, i, last)) else rcall(cmd, unpack(values, i, last)) end
  end
end

-- Puts a ready job in the waiting list (no priority) or the prioritized set, given its
-- priority and lifo flag; returns the state that puts it in.
-- The score is prio * 2^31 + 2^30 + seq with |seq| < 2^30 (negative for lifo): at the highest
-- priority (2^21) it stays below 2^53, so every score is exact in a double and jobs of one
-- priority keep their order.
local function place(K, id, prio, lifo)
  if prio > 0 then
    local seq = rcall('INCR', K .. KEY.seq) % 1073741823
    if lifo then seq = -seq end
    rcall('ZADD', K .. KEY.prio, prio * 2147483648 + 1073741824 + seq, id)
    return 'prioritized'
  end
  if lifo then rcall('LPUSH', K .. KEY.wait, id) else rcall('RPUSH', K .. KEY.wait, id) end
  return 'waiting'
end

-- A job's settings that only the rarer paths read, from the `cfg` field add writes:
-- "priority lifo retention_on_fail".
local function settings(K, id)
  local c = rcall('HGET', jkey(K, id), 'cfg') or ''
  local prio, lifo, rof = string.match(c, '^(%S+) (%S+) (%S+)$')
  return { prio = tonumber(prio) or 0, lifo = lifo == '1', rof = rof }
end

-- The same, reading the priority and lifo flag from the job, and setting its state.
local function place_ready(K, id)
  local cfg = settings(K, id)
  rcall('HSET', jkey(K, id), 'state', place(K, id, cfg.prio, cfg.lifo))
end

-- Takes a job out of the structure its state keeps it in.
local function unplace(K, id, state)
  if state == 'waiting' then rcall('LREM', K .. KEY.wait, 1, id)
  elseif state == 'prioritized' then rcall('ZREM', K .. KEY.prio, id)
  elseif state == 'delayed' then rcall('ZREM', K .. KEY.delayed, id)
  elseif state == 'active' then rcall('ZREM', K .. KEY.active, id)
  elseif state == 'completed' then rcall('ZREM', K .. KEY.completed, id)
  elseif state == 'failed' then rcall('ZREM', K .. KEY.failed, id) end
end

local function delete_job(K, id)
  rcall('DEL', jkey(K, id), hkey(K, id), lkey(K, id))
end

-- Applies retention ("all", "remove" or "COUNT:AGE", -1 for none) to a finished set,
-- at most 1000 removals per call.
local function trim(K, set, spec, now)
  if spec == 'all' or spec == 'remove' or spec == nil then return end
  local count, age = string.match(spec, '^(-?%d+):(-?%d+)$')
  count = tonumber(count); age = tonumber(age)
  local key = K .. KEY[set]
  local budget = 1000
  if age and age >= 0 then
    local old = rcall('ZRANGEBYSCORE', key, '-inf', '(' .. (now - age), 'LIMIT', 0, budget)
    for _, id in ipairs(old) do delete_job(K, id); rcall('ZREM', key, id) end
    budget = budget - #old
  end
  if count and count >= 0 and budget > 0 then
    local over = rcall('ZCARD', key) - count
    if over > 0 then
      local ids = rcall('ZRANGE', key, 0, math.min(over, budget) - 1)
      for _, id in ipairs(ids) do delete_job(K, id); rcall('ZREM', key, id) end
    end
  end
end

-- Ends the running attempt: appends its record to the job's history. (The running attempt
-- is marked in the hash by a_worker, and started at proc; `made` is its number.)
local function end_attempt(K, id, now, outcome, err, retry_delay)
  local jk = jkey(K, id)
  local f = rcall('HMGET', jk, 'made', 'proc', 'a_worker')
  if not f[3] then return end
  rcall('RPUSH', hkey(K, id), cjson.encode({
    attempt = tonumber(f[1]), worker = f[3], started_at = tonumber(f[2]), finished_at = now,
    outcome = outcome, error = err, retry_delay_ms = retry_delay }))
  rcall('HDEL', jk, 'a_worker')
  -- `hist` tells settling that there is a history list to delete with the job.
  rcall('HSET', jk, 'hist', '1')
end

-- A job's fields (in the order codec.rs reads them), history and logs (unless without_logs),
-- as fetch, get and list return them.
local JOB_FIELDS = { 'state', 'name', 'data', 'opts', 'progress', 'made', 'stall', 'rel', 'rv',
  'reason', 'created', 'run_at', 'proc', 'fin', 'a_worker', 'hist' }

local function read_job(K, id, without_logs)
  local jk = jkey(K, id)
  local fields = rcall('HMGET', jk, unpack(JOB_FIELDS))
  if not fields[1] then return false end
  -- Only a job with the `hist` flag has a history list.
  local history = {}
  if fields[16] then history = rcall('LRANGE', hkey(K, id), 0, -1) end
  local logs = {}
  if not without_logs then logs = rcall('LRANGE', lkey(K, id), 0, -1) end
  return { id, fields, history, logs }
end

-- Fails a job for good: failed set, reason, retention. Returns the job as it ended (read
-- before its retention may remove it).
local function fail_for_good(K, id, reason, now)
  local jk = jkey(K, id)
  rcall('HSET', jk, 'state', 'failed', 'reason', reason, 'fin', now)
  rcall('HDEL', jk, 'tok')
  local ended = read_job(K, id)
  local keep = settings(K, id).rof
  event(K, id, 'failed', 'reason', reason)
  if keep == 'remove' then
    delete_job(K, id)
  else
    rcall('ZADD', K .. KEY.failed, now, id)
    trim(K, 'failed', keep, now)
  end
  return ended
end

-- Settles the jobs described by ARGV[first..last], 5 values each: id, token, outcome
-- ("completed" | "retry" | "fail" | "released", as core decided it), payload (the return
-- value JSON, or the failure reason), delay_ms (the backoff before a retry). Returns per job
-- { answer, job }: answer "completed" | "retrying:DELAY" | "failed" | "released" | "lost"; job
-- is the job as it ended for "failed", else false. What every settled job shares (leaving the
-- active set, the completed event, deleting unkept jobs, retention) is done once per batch.
local function settle_items(K, active_key, first, last, now)
  local out = {}
  local woke = false
  local settled, completed, unkept, trims, seen = {}, {}, {}, {}, {}
  for i = first, last, 5 do
    local id, token, kind, payload, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local jk = jkey(K, id)
    local state, tok, keep, hist, logged = unpack(rcall('HMGET', jk, 'state', 'tok', 'roc', 'hist', 'logged'))
    if state ~= 'active' or tok ~= token or seen[id] then
      table.insert(out, { 'lost', false })
    else
      seen[id] = true
      settled[#settled + 1] = id
      if kind == 'completed' then
        completed[#completed + 1] = id
        if keep == 'remove' then
          -- Nothing of it is kept, so nothing of it is written first.
          -- Its history and log lists exist only if something was written to them.
          unkept[#unkept + 1] = jk
          if hist then unkept[#unkept + 1] = hkey(K, id) end
          if logged then unkept[#unkept + 1] = lkey(K, id) end
        else
          end_attempt(K, id, now, 'completed')
          rcall('HSET', jk, 'state', 'completed', 'rv', payload, 'fin', now)
          rcall('HDEL', jk, 'tok', 'reason')
          rcall('ZADD', K .. KEY.completed, now, id)
          if keep then trims[keep] = true end
        end
        table.insert(out, { 'completed', false })
      elseif kind == 'released' then
        end_attempt(K, id, now, 'released')
        rcall('HINCRBY', jk, 'rel', 1)
        rcall('HDEL', jk, 'tok')
        place_ready(K, id)
        woke = true
        table.insert(out, { 'released', false })
      elseif kind == 'retry' then
        end_attempt(K, id, now, 'failed', payload, tonumber(delay))
        rcall('HSET', jk, 'reason', payload)
        rcall('HDEL', jk, 'tok')
        if delay ~= '0' then
          local run_at = now + tonumber(delay)
          rcall('HSET', jk, 'state', 'delayed', 'run_at', run_at)
          rcall('ZADD', K .. KEY.delayed, run_at, id)
        else
          place_ready(K, id)
        end
        woke = true
        event(K, id, 'retrying', 'delay_ms', delay)
        table.insert(out, { 'retrying:' .. delay, false })
      else
        end_attempt(K, id, now, 'failed', payload)
        table.insert(out, { 'failed', fail_for_good(K, id, payload, now) })
      end
    end
  end
  call_chunked('ZREM', active_key, settled)
  call_chunked('DEL', nil, unkept)
  events(K, completed, 'completed')
  for keep in pairs(trims) do trim(K, 'completed', keep, now) end
  if woke then signal(K) end
  return out
end

-- Moves delayed jobs that fell due to ready, at most 1,000 per call; returns how many.
local function promote_due(K, now)
  local due = rcall('ZRANGEBYSCORE', K .. KEY.delayed, '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    rcall('ZREM', K .. KEY.delayed, id)
    place_ready(K, id)
  end
  if #due > 0 then signal(K) end
  return #due
end

-- Promotes due delayed jobs, then leases up to `max` ready jobs (waiting first, then by
-- priority). Returns, per job: { token, { id, fields, history, logs } }.
local function fetch_jobs(K, tok_key, worker, max, lease, now)
  promote_due(K, now)
  if max <= 0 or rcall('EXISTS', K .. KEY.paused) == 1 then return {} end
  local ids = rcall('LPOP', K .. KEY.wait, max) or {}
  if #ids < max then
    local top = rcall('ZPOPMIN', K .. KEY.prio, max - #ids)
    for i = 1, #top, 2 do table.insert(ids, top[i]) end
  end
  if #ids == 0 then return {} end
  -- One token per job, reserved in one step: the lease tokens of this call.
  local token = rcall('INCRBY', tok_key, #ids) - #ids
  local out, leased, deadlines = {}, {}, {}
  local at, deadline = tostring(now), tostring(now + lease)
  for _, id in ipairs(ids) do
    -- A processor does not need its job's log lines.
    local job = read_job(K, id, true)
    -- A job removed while it waited left its id behind: skip it.
    if job then
      token = token + 1
      local fields = job[2]
      fields[1], fields[6], fields[13], fields[15] = 'active', tostring(tonumber(fields[6] or '0') + 1), at, worker
      rcall('HSET', jkey(K, id), 'state', 'active', 'tok', token, 'made', fields[6], 'proc', at, 'a_worker', worker)
      deadlines[#deadlines + 1] = deadline
      deadlines[#deadlines + 1] = id
      leased[#leased + 1] = id
      out[#out + 1] = { token, job }
    end
  end
  call_chunked('ZADD', K .. KEY.active, deadlines)
  events(K, leased, 'active')
  return out
end

-- Adds jobs (the body of add.lua, shared with the schedule fire). `args` holds 9 values per
-- job from index `first`: custom id ("" for none), name, data, opts (JSON), prio, lifo,
-- delay_ms, settings (the `cfg` field, see `settings`), retention on complete. Returns id,
-- created (1/0) per job; or '', max_jobs when the queue would hold more than max_jobs (then
-- nothing is added). Ids, the waiting list and the added event are written once per batch.
local function add_jobs(K, id_key, max_jobs, args, first)
  local now = now_ms()
  local now_s = tostring(now)
  local n = 9
  local generated = 0
  for i = first, #args, n do
    if args[i] == '' then generated = generated + 1 end
  end
  if max_jobs >= 0 then
    -- New jobs: every generated id, and each custom id once unless it exists. Only unfinished
    -- jobs count; finished ones are bounded by their retention.
    local new, seen = generated, {}
    for i = first, #args, n do
      local custom = args[i]
      if custom ~= '' and not seen[custom] and rcall('EXISTS', jkey(K, custom)) == 0 then
        seen[custom] = true
        new = new + 1
      end
    end
    local held = rcall('LLEN', K .. KEY.wait) + rcall('ZCARD', K .. KEY.prio)
      + rcall('ZCARD', K .. KEY.delayed) + rcall('ZCARD', K .. KEY.active)
    if new > 0 and held + new > max_jobs then return { '', max_jobs } end
  end
  local next_id = 0
  if generated > 0 then next_id = rcall('INCRBY', id_key, generated) - generated end
  local out, added, back, front = {}, {}, {}, {}
  for i = first, #args, n do
    local custom = args[i]
    local id
    local created = 1
    if custom ~= '' and rcall('EXISTS', jkey(K, custom)) == 1 then
      id = custom
      created = 0
    else
      if custom ~= '' then
        id = custom
      else
        next_id = next_id + 1
        id = tostring(next_id)
      end
      local delay = tonumber(args[i + 6])
      local prio = tonumber(args[i + 4])
      local lifo = args[i + 5] == '1'
      local state = 'waiting'
      if delay > 0 then state = 'delayed' elseif prio > 0 then state = 'prioritized' end
      local run_at = now_s
      if delay > 0 then run_at = tostring(now + delay) end
      -- Counters (made, stall, rel) and progress start absent, read as 0.
      rcall('HSET', jkey(K, id), 'state', state, 'name', args[i + 1], 'data', args[i + 2],
        'opts', args[i + 3], 'cfg', args[i + 7], 'roc', args[i + 8], 'created', now_s, 'run_at', run_at)
      if state == 'delayed' then
        rcall('ZADD', K .. KEY.delayed, run_at, id)
      elseif state == 'prioritized' then
        place(K, id, prio, lifo) -- its state is written above
      elseif lifo then
        table.insert(front, id)
      else
        table.insert(back, id)
      end
      table.insert(added, id)
    end
    table.insert(out, id)
    table.insert(out, created)
  end
  -- LPUSH of the lifo ids in order leaves the last one first, as one LPUSH each would.
  call_chunked('LPUSH', K .. KEY.wait, front)
  call_chunked('RPUSH', K .. KEY.wait, back)
  events(K, added, 'added')
  if #added > 0 then signal(K) end
  return out
end
