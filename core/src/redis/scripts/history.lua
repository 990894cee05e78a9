-- Adds one process's per-minute counts to the queue's history (core/src/history.rs).
-- KEYS[1]: K:id (names the slot). ARGV[1]: K, ARGV[2]: how long after its start a minute is
-- kept (ms; a minute already past it is gone at once), then
-- for each minute: the minute, n, and n pairs of (field, increment).
-- Returns the number of minutes touched.
local K, ttl = ARGV[1], tonumber(ARGV[2])
local i, touched = 3, 0
while i <= #ARGV do
  local key = mkey(K, ARGV[i])
  local n = tonumber(ARGV[i + 1])
  for j = 0, n - 1 do
    rcall('HINCRBY', key, ARGV[i + 2 + 2 * j], ARGV[i + 3 + 2 * j])
  end
  rcall('PEXPIREAT', key, tonumber(ARGV[i]) * 60000 + ttl)
  touched = touched + 1
  i = i + 2 + 2 * n
end
return touched
