ALTER TABLE pgbench_accounts ADD COLUMN IF NOT EXISTS p200_new bigint;
