-- Stores a schedule. KEYS[1]: K:s:ID. ARGV[1]: K, ARGV[2]: id, ARGV[3]: spec (JSON),
-- ARGV[4]: next fire (ms, '' for none), ARGV[5]: created (ms), ARGV[6]: paused ('1'/'0').
-- A new schedule is stored as given; one whose spec changed takes the next fire (its count
-- stays); the same spec leaves everything as it is. Returns 1 created, 2 updated, 0 unchanged.
local K, id, spec, nxt = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = KEYS[1]
local old = rcall('HGET', key, 'spec')
if old == spec then return 0 end
local result = 2
if not old then
  result = 1
  rcall('HSET', key, 'spec', spec, 'next', nxt, 'last', '', 'fires', '0', 'paused', ARGV[6],
    'created', ARGV[5])
  rcall('SADD', K .. KEY.scheds, id)
else
  rcall('HSET', key, 'spec', spec, 'next', nxt)
end
if rcall('HGET', key, 'paused') == '1' or nxt == '' then
  rcall('ZREM', K .. KEY.sched, id)
else
  rcall('ZADD', K .. KEY.sched, nxt, id)
end
return result
