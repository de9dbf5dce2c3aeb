UPDATE pgbench_accounts SET p125_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s;
