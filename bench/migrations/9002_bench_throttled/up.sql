ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS c_new bigint;
