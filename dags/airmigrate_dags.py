"""One DAG and one rollback DAG per folder under migrations/ (AIRMIGRATE_MIGRATIONS_DIR), and
airmigrate__migrate, which triggers every migration's DAG in folder order (`airmigrate migrate`); the same for
every script or revision of an imported Flyway or Alembic project (migrations/_sources/, `airmigrate import`).

Folders that do not parse are reported by airmigrate_errors.py, so they show as an import
error there without keeping the good migrations from loading.
"""

import os
from pathlib import Path

# The project this file belongs to: default home of migrations/, expectations/ and var/ for the
# dag-processor and for the task processes (both parse this file), whatever their working directory.
os.environ.setdefault("AIRMIGRATE_HOME", str(Path(__file__).resolve().parent.parent))

from airmigrate.airflow.dag_factory import build_all  # noqa: E402
from airmigrate.airflow.source_dags import build_source_dags  # noqa: E402

source_dags = build_source_dags()[0]
# imported projects come first in airmigrate__migrate: their chains run before the native folders (README)
dags, _errors = build_all(imported_first=tuple(d for d in source_dags if d.endswith("__migrate")))
globals().update(dags)
globals().update(source_dags)
