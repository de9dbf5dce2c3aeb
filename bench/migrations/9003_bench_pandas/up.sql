ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS d_new bigint;
