UPDATE pgbench_accounts SET p150_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s;
