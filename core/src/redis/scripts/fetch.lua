-- Leases up to ARGV[3] ready jobs. KEYS[1]: K:tok. ARGV: K, worker, max, lease_ms.
return fetch_jobs(ARGV[1], KEYS[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now_ms())
