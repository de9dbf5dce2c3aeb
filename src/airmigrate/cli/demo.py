"""`airmigrate demo` and `airmigrate target`: the demo database, seeded, with both example migrations run."""

from __future__ import annotations

import dataclasses
import os
import time

from airmigrate import settings
from airmigrate.cli.common import prepare_airflow_env
from airmigrate.cli.run import OUTPUT, newest_report, run_and_report
from airmigrate.settings import DEMO_DB, DEMO_MIGRATIONS as EXAMPLES


def cmd_demo(args) -> int:
    from airmigrate import devdb

    server = devdb.server_target()
    print(f"target server: {server.describe()}")
    t0 = time.monotonic()
    target = devdb.recreate_database(server, os.environ.get("AIRMIGRATE_DEMO_DB", DEMO_DB))
    devdb.seed_users(target, args.rows)
    print(f"seeded {args.rows:,} users into {target.describe()} in {time.monotonic() - t0:.1f}s\n")
    os.environ["AIRFLOW_CONN_AIRMIGRATE_TARGET"] = target.airflow_uri()
    os.environ.setdefault("AIRMIGRATE_DOCS_DIR", str(settings.var_dir() / "docs" / "schema"))  # a throwaway db
    OUTPUT["verbose"] = args.verbose  # without it, each run's task logs go to a file its summary names
    prepare_airflow_env()
    worst = 0
    for migration_id in EXAMPLES:
        worst = max(worst, run_and_report(migration_id, target))
        print()
    print("reports (open them in a browser, from disk):")
    for migration_id in EXAMPLES:
        print(f"  {migration_id}: {newest_report(migration_id) or 'none written'}")
    # the CLI's AIRMIGRATE_TARGET_URL names the database itself (the demo's names the server)
    url = dataclasses.replace(target, password=None).url()
    print(f"look closer: AIRMIGRATE_TARGET_URL='{url}' .venv/bin/airmigrate status {EXAMPLES[0]}"
          + ("   (put your password into the URL)" if target.password else ""))
    return worst


def cmd_target(args) -> int:
    from airmigrate import devdb

    server = devdb.server_target()
    print(server.with_dbname(args.database).airflow_uri())
    return 0
