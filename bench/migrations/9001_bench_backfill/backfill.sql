UPDATE pgbench_accounts SET b_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s;
