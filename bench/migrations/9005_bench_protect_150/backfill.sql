UPDATE pgbench_accounts SET p150_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s AND p150_new IS DISTINCT FROM abalance + aid;
