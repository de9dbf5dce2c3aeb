ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS p110_new bigint;
