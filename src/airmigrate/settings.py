"""Where things live, from environment variables with project-local defaults.

Read at call time (not import time) so tests and the CLI can point one process at
other folders.
"""

from __future__ import annotations

import os
from pathlib import Path


def seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment variable `name` (`default` when unset or empty). A value that is
    not a positive number fails naming the variable and what it takes, not with float()'s bare message."""
    raw = os.environ.get(name) or ""
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={raw!r}: expected a number of seconds greater than 0, e.g. {name}={default:g} "
                         f"(unset it for the default, {default:g})")
    return value


def project_root() -> Path:
    """AIRMIGRATE_HOME (the DAG files set it to their project), else the working directory."""
    return Path(os.environ.get("AIRMIGRATE_HOME") or Path.cwd())


def migrations_dir(default: Path | None = None) -> Path:
    return Path(os.environ.get("AIRMIGRATE_MIGRATIONS_DIR", default or project_root() / "migrations"))


def expectations_dir(default: Path | None = None) -> Path:
    return Path(os.environ.get("AIRMIGRATE_EXPECTATIONS_DIR", default or project_root() / "expectations"))


def var_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_VAR_DIR", project_root() / "var"))


def cache_dir() -> Path:
    """What airmigrate computes once and keeps (Great Expectations' expectation types, Alembic revisions' SQL):
    AIRMIGRATE_CACHE_DIR, else var/cache. Every entry is checked against what it was computed from, so one
    cache may serve several var dirs (the test suite shares one: each cold GX registry read costs ~4 s)."""
    return Path(os.environ.get("AIRMIGRATE_CACHE_DIR", var_dir() / "cache"))


def docs_dir() -> Path:
    """Schema documentation and its CHANGELOG.md (in the project, to be committed with the migrations)."""
    return Path(os.environ.get("AIRMIGRATE_DOCS_DIR", project_root() / "docs" / "schema"))


def backup_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_BACKUP_DIR", var_dir() / "backups"))


def data_docs_dir() -> Path:
    return Path(os.environ.get("AIRMIGRATE_DATA_DOCS_DIR", var_dir() / "data_docs"))


def trust_forwarded_host() -> bool:
    """AIRMIGRATE_TRUST_FORWARDED_HOST=1: a reverse proxy in front of Airflow sets X-Forwarded-Host (and strips
    one sent by a client), so the console's same-origin check may accept it. Off by default: without such a
    proxy anyone can send the header and name their own site as this one."""
    return os.environ.get("AIRMIGRATE_TRUST_FORWARDED_HOST", "").strip().lower() in ("1", "true", "yes")


DEMO_MIGRATIONS = ("0001_add_user_email_verified", "0002_normalize_user_phone")  # the examples `make demo` runs
DEMO_DB = "airmigrate_demo"  # the database `make demo` (re)creates; `make airflow` points at it too
