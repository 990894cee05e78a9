-- Removes, pauses or resumes a schedule. KEYS[1]: K:s:ID. ARGV[1]: K, ARGV[2]: id,
-- ARGV[3]: 'remove' | 'pause' | 'resume', ARGV[4]: next fire on resume ('' for none).
-- Returns 1 if the schedule existed, 0 if not.
local K, id, op = ARGV[1], ARGV[2], ARGV[3]
local key = KEYS[1]
if rcall('EXISTS', key) == 0 then return 0 end
if op == 'remove' then
  rcall('DEL', key)
  rcall('SREM', K .. KEY.scheds, id)
  rcall('ZREM', K .. KEY.sched, id)
elseif op == 'pause' then
  rcall('HSET', key, 'paused', '1')
  rcall('ZREM', K .. KEY.sched, id)
else
  rcall('HSET', key, 'paused', '0', 'next', ARGV[4])
  if ARGV[4] == '' then
    rcall('ZREM', K .. KEY.sched, id)
  else
    rcall('ZADD', K .. KEY.sched, ARGV[4], id)
  end
end
return 1
