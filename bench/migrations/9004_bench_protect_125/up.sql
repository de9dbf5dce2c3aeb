ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS p125_new bigint;
