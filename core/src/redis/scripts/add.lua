-- Adds jobs. KEYS[1]: K:id. ARGV[1]: K, ARGV[2]: max_jobs (-1: no limit); then 9 values per
-- job: custom id ("" for none), name, data, opts (JSON), prio, lifo, delay_ms, settings (the
-- `cfg` field, see `settings`), retention on complete.
-- Returns id, created (1/0) per job; or '', max_jobs when the queue would hold more than
-- max_jobs (then nothing is added). Ids, the waiting list and the added event are written
-- once for the whole batch.
local K = ARGV[1]
local now = now_ms()
local now_s = tostring(now)
local n = 9
local generated = 0
local max_jobs = tonumber(ARGV[2])
for i = 3, #ARGV, n do
  if ARGV[i] == '' then generated = generated + 1 end
end
if max_jobs >= 0 then
  -- New jobs: every generated id, and each custom id once unless it exists. Only unfinished
  -- jobs count; finished ones are bounded by their retention.
  local new, seen = generated, {}
  for i = 3, #ARGV, n do
    local custom = ARGV[i]
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
if generated > 0 then next_id = rcall('INCRBY', KEYS[1], generated) - generated end
local out, added, back, front = {}, {}, {}, {}
for i = 3, #ARGV, n do
  local custom = ARGV[i]
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
    local delay = tonumber(ARGV[i + 6])
    local prio = tonumber(ARGV[i + 4])
    local lifo = ARGV[i + 5] == '1'
    local state = 'waiting'
    if delay > 0 then state = 'delayed' elseif prio > 0 then state = 'prioritized' end
    local run_at = now_s
    if delay > 0 then run_at = tostring(now + delay) end
    -- Counters (made, stall, rel) and progress start absent, read as 0.
    rcall('HSET', jkey(K, id), 'state', state, 'name', ARGV[i + 1], 'data', ARGV[i + 2],
      'opts', ARGV[i + 3], 'cfg', ARGV[i + 7], 'roc', ARGV[i + 8], 'created', now_s, 'run_at', run_at)
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
