-- Adds jobs. KEYS[1]: K:id. ARGV[1]: K, ARGV[2]: max_jobs (-1: no limit); then 9 values per
-- job: custom id ("" for none), name, data, opts (JSON), prio, lifo, delay_ms, settings (the
-- `cfg` field, see `settings`), retention on complete.
-- Returns id, created (1/0) per job; or '', max_jobs when the queue would hold more than
-- max_jobs (then nothing is added). Ids, the waiting list and the added event are written
-- once for the whole batch.
return add_jobs(ARGV[1], KEYS[1], tonumber(ARGV[2]), ARGV, 3)
