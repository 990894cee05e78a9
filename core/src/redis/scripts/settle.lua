-- Settles jobs. KEYS[1]: K:active. ARGV: K, then 5 values per job: id, token, kind
-- ("completed" | "failed" | "released"), payload (the return value JSON, or the reason),
-- retry ("1" or "0"), jitter draw (0..1): 6 values in all.
-- Returns per job { answer, job }: answer "completed" | "retrying:DELAY" | "failed" |
-- "released" | "lost"; job is the job as it ended for "failed", else false.
local K = ARGV[1]
local now = now_ms()
local out = {}
local woke = false
for i = 2, #ARGV, 6 do
  local id, token, kind, payload, retry, draw = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local jk = jkey(K, id)
  local state, tok = unpack(redis.call('HMGET', jk, 'state', 'tok'))
  if state ~= 'active' or tok ~= token then
    table.insert(out, { 'lost', false })
  else
    redis.call('ZREM', KEYS[1], id)
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
