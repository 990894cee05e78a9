-- Settles finished jobs and leases the next ones in one call. KEYS[1]: K:active, KEYS[2]: K:tok.
-- ARGV: K, worker, max, lease_ms, then 5 values per finished job (see settle_items).
-- Returns { settle answers, fetched jobs }.
local now = now_ms()
local settled = settle_items(ARGV[1], KEYS[1], 5, #ARGV, now)
local fetched = {}
if tonumber(ARGV[3]) > 0 then
  fetched = fetch_jobs(ARGV[1], KEYS[2], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now)
end
return { settled, fetched }
