ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS b_new bigint;
