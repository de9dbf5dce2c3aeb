ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS b_new;
