-- Settles jobs. KEYS[1]: K:active. ARGV: K, then 5 values per job (see settle_items).
return settle_items(ARGV[1], KEYS[1], 2, #ARGV, now_ms())
