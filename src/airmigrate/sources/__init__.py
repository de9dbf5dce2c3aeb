"""Imported projects: Flyway and Alembic migrations run in place as airmigrate DAGs (issue 23).

``migrations/_sources/<name>.yaml`` points the migrations tree at a Flyway or Alembic project (``airmigrate
import`` writes it); :func:`load_sources` reads every such project, :func:`find` the source of one imported
migration. No database and no Airflow at import time: the dag-processor calls this on every parse.
"""

from __future__ import annotations

from pathlib import Path

from airmigrate.errors import AirmigrateError, SpecError
from airmigrate.sources.alembic_source import AlembicSource
from airmigrate.sources.flyway_source import FlywaySource
from airmigrate.sources.model import Imported, SourceFile, read_source_file, source_files, source_paths


def open_source(source: SourceFile):
    """The source object for a settings file (FlywaySource or AlembicSource)."""
    if source.settings.kind == "flyway":
        return FlywaySource(source)

    return AlembicSource(source)


def load_sources(migrations_dir: Path | str) -> list:
    """Every imported project under migrations/_sources/ (SpecError naming the file when one does not load)."""
    return [open_source(source) for source in source_files(Path(migrations_dir))]


def load_sources_safely(migrations_dir: Path | str) -> tuple[list, list[tuple[Path, str]]]:
    """(the projects that load, (settings file, error) of those that do not): one broken project never keeps the
    others (or the native folders) from working."""
    sources, broken = [], []
    for path in source_paths(Path(migrations_dir)):
        try:
            source = open_source(read_source_file(path))
            source.migrations()
        except SpecError as exc:
            broken.append((path, str(exc)))
            continue
        sources.append(source)
    return sources, broken


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
