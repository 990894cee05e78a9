-- Gives back (or extends) a load lease, if the caller still holds it.
-- ARGV: lease key, token, extend ms (0: give back).
local held = redis.call('GET', ARGV[1])
if held ~= ARGV[2] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  return redis.call('PEXPIRE', ARGV[1], tonumber(ARGV[3]))
end
return redis.call('DEL', ARGV[1])
