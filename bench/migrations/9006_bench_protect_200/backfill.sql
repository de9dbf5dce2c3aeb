UPDATE pgbench_accounts SET p200_new = abalance + aid
WHERE aid BETWEEN %(lo)s AND %(hi)s;
