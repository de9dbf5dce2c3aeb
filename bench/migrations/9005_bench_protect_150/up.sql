ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS p150_new bigint;
