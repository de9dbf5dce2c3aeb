UPDATE pgbench_accounts SET c_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s AND c_new IS DISTINCT FROM abalance + aid;
