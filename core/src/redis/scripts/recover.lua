-- Active jobs whose lease ran out go back to ready (stall + 1), or fail past max_stalled.
-- KEYS[1]: K:active. ARGV: K, max_stalled.
-- Returns { requeued, failed }, each a flat list of id, name, id, name, ...
local K = ARGV[1]
local max_stalled = tonumber(ARGV[2])
local now = now_ms()
local expired = rcall('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
local requeued, failed = {}, {}
for _, id in ipairs(expired) do
  rcall('ZREM', KEYS[1], id)
  local jk = jkey(K, id)
  if rcall('EXISTS', jk) == 1 then
    end_attempt(K, id, now, 'stalled', 'lease expired')
    local stalls = rcall('HINCRBY', jk, 'stall', 1)
    rcall('HDEL', jk, 'tok')
    event(K, id, 'stalled')
    local name = rcall('HGET', jk, 'name') or ''
    if stalls > max_stalled then
      fail_for_good(K, id, 'stalled more than ' .. max_stalled ..
        ' time(s): its lease expired while active (the worker died or hung)', now)
      table.insert(failed, id)
      table.insert(failed, name)
    else
      place_ready(K, id)
      table.insert(requeued, id)
      table.insert(requeued, name)
    end
  end
end
if #requeued > 0 then signal(K) end
return { requeued, failed }
