-- Fires a schedule if its next fire is still the one expected and it is not paused: adds the
-- fire's jobs and stores its new next fire, last fire and count, at once.
-- KEYS[1]: K:s:ID, KEYS[2]: K:id. ARGV[1]: K, ARGV[2]: id, ARGV[3]: expected next fire,
-- ARGV[4]: new next fire ('' for none), ARGV[5]: last fire ('' for none), ARGV[6]: fire count,
-- ARGV[7]: max_jobs (-1: no limit); then 9 values per job, as in add.lua.
-- Returns 1 fired, 0 not (fired by another caller, changed, paused or gone), -1 queue full.
local K, id = ARGV[1], ARGV[2]
local key = KEYS[1]
local state = rcall('HMGET', key, 'next', 'paused')
if state[1] ~= ARGV[3] or state[2] == '1' then return 0 end
if #ARGV >= 8 then
  local added = add_jobs(K, KEYS[2], tonumber(ARGV[7]), ARGV, 8)
  if added[1] == '' then return -1 end
end
rcall('HSET', key, 'next', ARGV[4], 'last', ARGV[5], 'fires', ARGV[6])
if ARGV[4] == '' then
  rcall('ZREM', K .. KEY.sched, id)
else
  rcall('ZADD', K .. KEY.sched, ARGV[4], id)
end
return 1
