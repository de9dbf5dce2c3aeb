"""Shows every migration folder that does not parse as an Airflow import error (with file, field and fix)."""

import os
from pathlib import Path

os.environ.setdefault("AIRMIGRATE_HOME", str(Path(__file__).resolve().parent.parent))

from airmigrate.airflow.dag_factory import raise_spec_errors  # noqa: E402

raise_spec_errors()
