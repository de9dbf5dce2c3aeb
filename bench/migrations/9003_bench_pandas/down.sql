ALTER TABLE pgbench_accounts DROP COLUMN IF EXISTS d_new;
