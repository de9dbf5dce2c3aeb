"""Shows every migration folder (or imported project) that does not parse as an Airflow import error (with file,
field and fix)."""

import os
from pathlib import Path

os.environ.setdefault("AIRMIGRATE_HOME", str(Path(__file__).resolve().parent.parent))

from airmigrate.airflow.source_dags import raise_all_errors  # noqa: E402

raise_all_errors()
