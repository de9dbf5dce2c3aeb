ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS c_new;
