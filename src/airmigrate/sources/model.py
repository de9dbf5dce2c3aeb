"""What every imported source (Flyway, Alembic) gives the runner, and the setting that points a migrations
tree at one: ``migrations/_sources/<name>.yaml`` (written by ``airmigrate import``; ``spec.discover`` skips
folders starting with ``_``, so native folders and imported scripts never mix up).

The team's folder is read in place and never written: a script added there is a new migration (and DAG) at the
next parse, the tool's own history table stays the record of what is applied, and the team can go back to
``flyway migrate`` or ``alembic upgrade`` at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airmigrate.errors import SpecError

SOURCES_DIR = "_sources"


class Acknowledged(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(..., description="The lint rule, as `airmigrate lint` prints it")
    reason: str = Field(..., min_length=10, description="Why it is safe here (at least a sentence)")


class SourceSettings(BaseModel):
    """The contents of ``migrations/_sources/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["flyway", "alembic"] = Field(..., description="The tool whose project this is")
    location: str = Field(..., description="The project: Flyway's folder, or alembic.ini / the script folder "
                                           "(relative to this file)")
    config: str | None = Field(None, description="Flyway: the config file (default flyway.conf/.toml in location)")
    connection_id: str = Field("airmigrate_target", description="Airflow connection of the target database")
    lock_timeout_ms: int = Field(500, ge=10, le=600_000, description="lock_timeout for every statement")
    statement_timeout_ms: int = Field(3_600_000, ge=100, description="statement_timeout for every statement")
    out_of_order: bool = Field(False, description="Flyway's outOfOrder: run a version lower than the highest "
                                                  "applied one")
    version_table: str = Field("alembic_version", description="Alembic: the version table (env.py's version_table)")
    version_table_schema: str | None = Field(None, description="Alembic: its schema (env.py's version_table_schema)")
    acknowledge: dict[str, list[Acknowledged]] = Field(
        default_factory=dict, description="script file name (or migration id): the lint rules it breaks on purpose")


@dataclass(frozen=True)
class Imported:
    """One migration read from a source: a Flyway script or an Alembic revision."""

    id: str  # the DAG id: <source>_<version or revision>_<slug>
    source: str  # the source's name (its settings file's stem)
    title: str  # what the tool calls it: "V1.1 add email", "ae1027a6acf (add account)"
    file: Path
    up_sql: str | None  # the statements as the tool would run them; None: Python only (run through the tool)
    down_sql: str | None  # the rollback (U script, downgrade()); None: none
    checksum: str  # the tool's own (Flyway's CRC32, the revision file's sha256 for Alembic)
    repeatable: bool = False
    ref: object = None  # the tool's object (flyway.Script, alembic Script)


@dataclass
class Status:
    """Where one imported migration stands in the target, read from the tool's own history table."""

    state: str  # pending, applied, failed, rolled back, baseline, outdated, changed since applied
    detail: str | None = None
    applied_at: datetime | None = None
    applied_by: str | None = None
    duration_s: float | None = None
    problem: bool = False

    @property
    def done(self) -> bool:
        return self.state in ("applied", "baseline")


@dataclass
class SourceFile:
    """A settings file and what it says, with paths resolved against its folder."""

    path: Path
    settings: SourceSettings
    name: str = field(init=False)

    def __post_init__(self):
        self.name = self.path.stem

    def resolve(self, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else (self.path.parent / path).resolve()

    def acknowledged(self, migration: Imported) -> dict[str, str]:
        rules = self.settings.acknowledge.get(migration.file.name) or self.settings.acknowledge.get(migration.id) or []
        return {a.rule: a.reason for a in rules}


def read_source_file(path: Path) -> SourceFile:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(path, "(yaml)", f"not valid YAML ({exc})", "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise SpecError(path, "(document)", "must be a mapping", "write `kind: flyway` and `location: <folder>`")
    try:
        return SourceFile(path, SourceSettings.model_validate(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        field_name = ".".join(str(p) for p in err["loc"]) or "(document)"
        raise SpecError(path, field_name, err["msg"], "see `airmigrate import --help` and the README section "
                                                      "\"Importing a Flyway or Alembic project\"") from None


def source_paths(migrations_dir: Path) -> list[Path]:
    """The settings files under migrations/_sources/, by name."""
    folder = Path(migrations_dir) / SOURCES_DIR
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def source_files(migrations_dir: Path) -> list[SourceFile]:
    """Every source settings file under migrations/_sources/, read (SpecError at the first that does not load)."""
    return [read_source_file(p) for p in source_paths(migrations_dir)]
