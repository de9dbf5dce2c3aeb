UPDATE pgbench_accounts SET p110_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s;
