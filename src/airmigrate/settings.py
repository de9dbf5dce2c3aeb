"""Where things live, from environment variables with project-local defaults.

Read at call time (not import time) so tests and the CLI can point one process at
other folders.
"""

from __future__ import annotations

import os
from pathlib import Path

def project_root() -> Path:
    """AIRMIGRATE_HOME (the DAG files set it to their project), else the working directory."""
    return Path(os.environ.get("AIRMIGRATE_HOME") or Path.cwd())


def migrations_dir(default: Path | None = None) -> Path:
    return Path(os.environ.get("AIRMIGRATE_MIGRATIONS_DIR", default or project_root() / "migrations"))


def expectations_dir(default: Path | None = None) -> Path:
    return Path(os.environ.get("AIRMIGRATE_EXPECTATIONS_DIR", default or project_root() / "expectations"))


def var_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_VAR_DIR", project_root() / "var"))


def docs_dir() -> Path:
    """Schema documentation and its CHANGELOG.md (in the project, to be committed with the migrations)."""
    return Path(os.environ.get("AIRMIGRATE_DOCS_DIR", project_root() / "docs" / "schema"))


def backup_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_BACKUP_DIR", var_dir() / "backups"))


def data_docs_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_DATA_DOCS_DIR", var_dir() / "data_docs"))
