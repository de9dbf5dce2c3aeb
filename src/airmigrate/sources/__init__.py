"""Imported projects: Flyway and Alembic migrations run in place as airmigrate DAGs (issue 23).

``migrations/_sources/<name>.yaml`` points the migrations tree at a Flyway or Alembic project (``airmigrate
import`` writes it); :func:`load_sources` reads every such project, :func:`find` the source of one imported
migration. No database and no Airflow at import time: the dag-processor calls this on every parse.
"""

from __future__ import annotations

from pathlib import Path

from airmigrate.errors import AirmigrateError
from airmigrate.sources.alembic_source import AlembicSource
from airmigrate.sources.flyway_source import FlywaySource
from airmigrate.sources.model import Imported, SourceFile, source_files


def open_source(source: SourceFile):
    """The source object for a settings file (FlywaySource or AlembicSource)."""
    if source.settings.kind == "flyway":
        return FlywaySource(source)

    return AlembicSource(source)


def load_sources(migrations_dir: Path | str) -> list:
    """Every imported project under migrations/_sources/ (SpecError naming the file when one does not load)."""
    return [open_source(source) for source in source_files(Path(migrations_dir))]


def find(migrations_dir: Path | str, migration_id: str) -> tuple[object, Imported] | None:
    """(source, migration) for an imported migration's id; None when no source has it."""
    for source in load_sources(migrations_dir):
        for migration in source.migrations():
            if migration.id == migration_id:
                return source, migration
    return None


def find_or_fail(migrations_dir: Path | str, migration_id: str) -> tuple[object, Imported]:
    found = find(migrations_dir, migration_id)
    if found is None:
        raise AirmigrateError(f"no imported migration '{migration_id}' in {Path(migrations_dir) / '_sources'}")
    return found
