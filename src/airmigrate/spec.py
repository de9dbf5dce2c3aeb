"""Reads a migration folder into a frozen, typed :class:`Migration`.

No database and no Airflow here: this runs while the dag-processor parses DAG files,
so it must be fast and side-effect free. Every error is a :class:`SpecError` naming
the file, the field and the fix, so a bad folder shows up in Airflow as an import
error a user can act on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pglast
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airmigrate.errors import SpecError
from airmigrate.operations import Operation
from airmigrate.window import Window

SPEC_FILE = "migration.yaml"
FOLDER_NAME = re.compile(r"^[0-9]{4}_[a-z0-9_]+$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
CRON_OR_PRESET = re.compile(r"^(@(once|hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$")

Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern, description="A plain PostgreSQL identifier")]


class Throttle(BaseModel):
    """Database health limits checked before each batch; a breach pauses the shard with backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_replication_lag_s: float | None = Field(1.5, description="Pause while a replica lags more (gh-ost: 1.5 s)")
    max_transaction_age_s: float | None = Field(300, description="Pause while another transaction is older")
    max_lock_waiters: int | None = Field(5, description="Pause while more sessions wait for locks")
    pause_during_autovacuum: bool = Field(True, description="Pause while autovacuum works on the table")
    max_pause_s: float = Field(30, gt=0, description="Longest single pause (exponential backoff up to this)")


class BackfillSpec(BaseModel):
    """How existing rows get their new values: a SQL statement or a pandas transform, one key range per batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sql: str | None = Field(
        None,
        description="File with one UPDATE statement restricted to the batch with %(lo)s and %(hi)s "
        "(inclusive key bounds). It must be safe to re-run.",
    )
    transform: str | None = Field(
        None, description="Python file defining transform(df) -> df, applied to each batch with pandas."
    )
    reads: list[Identifier] = Field(default_factory=list, description="Columns the pandas transform reads.")
    columns: list[Identifier] = Field(
        ..., min_length=1, description="Columns the backfill writes; existing ones are snapshotted for rollback."
    )
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts per batch before it is marked failed.")
    max_failed_share: float = Field(0.5, gt=0, le=1, description="Stop early when this share of batches failed.")
    target_batch_seconds: float = Field(0.2, gt=0, le=60, description="Batch size adapts to take about this long.")
    min_batch_size: int = Field(1000, ge=1, description="Adaptive batch size never goes below this.")
    max_batch_size: int = Field(2_000_000, ge=1, description="Adaptive batch size never goes above this.")
    adaptive: bool = Field(True, description="Adapt the batch size to target_batch_seconds (else fixed).")
    sleep_between_batches_ms: int = Field(0, ge=0, le=60_000, description="Pause after every batch (throttling).")
    throttle: "Throttle | None" = Field(None, description="Health checks before each batch; any breach pauses.")
    sync: dict[str, str] = Field(default_factory=dict,
                                 description="column: expression. A trigger applies it to rows the application "
                                             "writes during the migration (installed before the first batch, "
                                             "removed at cleanup), so derived values never go stale.")

    @field_validator("sync")
    @classmethod
    def _sync(cls, value: dict[str, str]) -> dict[str, str]:
        from airmigrate.operations.base import check_expression

        for column, expression in value.items():
            if not IDENTIFIER.match(column):
                raise ValueError(f"sync: '{column}' is not a plain column name")
            check_expression(expression)
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self):
        if (self.sql is None) == (self.transform is None):
            raise ValueError("give exactly one of `sql` or `transform`")
        if self.transform and not self.reads:
            raise ValueError("a `transform` needs `reads`: the columns passed to it")
        return self


class Acknowledgement(BaseModel):
    """A lint rule this migration breaks on purpose, and why (reviewed like code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str = Field(..., description="The rule name, as `airmigrate lint` prints it")
    reason: str = Field(..., min_length=10, description="Why it is safe here (at least a sentence)")


BackfillSpec.model_rebuild()


class MigrationSpec(BaseModel):
    """The contents of ``migration.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(None, description="Must equal the folder name when given.")
    description: str = Field(..., min_length=1, description="What the migration does; shown as the DAG's docs.")
    table: str = Field(..., description="The table the migration changes: name or schema.name.")
    key: Identifier | list[Identifier] = Field(
        "id", description="Batching key: primary key or unique NOT NULL column(s): integer, text, uuid, or a "
                          "list for a composite key")
    connection_id: str = Field("airmigrate_target", description="Airflow connection of the target database.")
    up: str | None = Field(None, description="SQL file run by the schema_change stage (default up.sql; "
                                              "optional when `operations` are given).")
    down: str | None = Field(None, description="SQL file run by the rollback DAG (default down.sql; optional "
                                                "when `operations` are given).")
    operations: list[Operation] = Field(default_factory=list, description="Zero-downtime patterns to apply, in order")
    acknowledge: list[Acknowledgement] = Field(default_factory=list,
                                               description="Lint rules this migration breaks on purpose, with reasons")
    approval: bool | None = Field(None, description="Wait for a human approval in Airflow before the contract "
                                                     "(cleanup) step; default: on when it drops anything")
    cleanup: str | None = Field(None, description="SQL file run by the cleanup (contract) stage.")
    backfill: BackfillSpec | None = None
    expectations: str | None = Field(
        None, description="Expectation suite file in the expectations folder; default <id>.json."
    )
    batch_size: int = Field(10_000, ge=1, le=2_000_000, description="Rows per backfill batch.")
    shards: int = Field(2, ge=1, le=64, description="Parallel backfill tasks (mapped Airflow tasks).")
    lock_timeout_ms: int = Field(500, ge=10, le=600_000, description="lock_timeout for every DDL statement.")
    statement_timeout_ms: int = Field(
        600_000, ge=100, description="statement_timeout for every DDL statement and backfill batch."
    )
    ddl_attempts: int = Field(8, ge=1, le=50, description="Attempts per DDL group on lock timeout (55P03).")
    schedule: str | None = Field(None, description="Cron expression to run in an off-peak window; none = manual.")
    window: Window | None = Field(None, description="Off-peak window: outside it the backfill finishes the batch "
                                                    "in hand and waits (without a worker slot) for the next one")

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError("must be `table` or `schema.table`, plain identifiers")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None and not CRON_OR_PRESET.match(value.strip()):
            raise ValueError("must be a 5-field cron expression or a preset such as @daily")
        return value

    @model_validator(mode="after")
    def _composite_key_limits(self):
        if isinstance(self.key, list) and (self.operations or (self.backfill and self.backfill.transform)):
            raise ValueError("operations and pandas transforms need a single-column `key`")
        return self

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(self.key) if isinstance(self.key, list) else (self.key,)

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else "public"

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


FIXES = {
    "missing": "add the field to {file}",
    "extra_forbidden": "remove it or correct its spelling; allowed fields are listed in migration.schema.json",
    "string_pattern_mismatch": "use a plain PostgreSQL identifier (letters, digits, _)",
}


@dataclass(frozen=True)
class Migration:
    """A parsed migration folder: the spec plus the texts of its files and their checksum."""

    id: str
    folder: Path
    spec: MigrationSpec
    up_sql: str
    down_sql: str
    cleanup_sql: str | None
    backfill_sql: str | None
    transform_file: Path | None
    expectations_file: Path | None
    checksum: str

    @property
    def rollback_dag_id(self) -> str:
        return f"{self.id}__rollback"


def load_migration(folder: Path | str, expectations_dir: Path | str | None = None) -> Migration:
    """Parse and validate one migration folder; raise SpecError naming file, field and fix."""
    folder = Path(folder)
    spec_path = folder / SPEC_FILE
    if not FOLDER_NAME.match(folder.name):
        raise SpecError(folder, "folder name", f"'{folder.name}' is not NNNN_slug",
                        "rename the folder like 0003_add_orders_index (4 digits, lowercase slug)")
    if not spec_path.is_file():
        raise SpecError(spec_path, "(file)", "missing", f"create {SPEC_FILE} in the folder (see README)")
    spec = _parse_spec(spec_path)
    if spec.id is not None and spec.id != folder.name:
        raise SpecError(spec_path, "id", f"'{spec.id}' differs from the folder name '{folder.name}'",
                        f"set `id: {folder.name}` or drop the field")
    texts = {
        "up": _sql_file(folder, spec.up, "up", optional=bool(spec.operations)),
        "down": _sql_file(folder, spec.down, "down", optional=bool(spec.operations)),
        "cleanup": _read_sql(folder, spec.cleanup, "cleanup") if spec.cleanup else None,
        "backfill.sql": None,
    }
    transform_file = None
    if spec.backfill and spec.backfill.sql:
        texts["backfill.sql"] = _read_sql(folder, spec.backfill.sql, "backfill.sql", required=True)
        _check_backfill_placeholders(folder / spec.backfill.sql, texts["backfill.sql"], spec.key_columns)
    if spec.backfill and spec.backfill.transform:
        transform_file = _require_file(folder, spec.backfill.transform, "backfill.transform")
    expectations_file = _expectations_file(spec_path, spec, folder.name, expectations_dir)
    return Migration(
        id=folder.name,
        folder=folder,
        spec=spec,
        up_sql=texts["up"],
        down_sql=texts["down"],
        cleanup_sql=texts["cleanup"],
        backfill_sql=texts["backfill.sql"],
        transform_file=transform_file,
        expectations_file=expectations_file,
        checksum=_checksum(folder, expectations_file),
    )


def discover(migrations_dir: Path | str) -> list[Path]:
    """Migration folders in id order (every subfolder holding a migration.yaml, or looking like NNNN_*)."""
    root = Path(migrations_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def json_schema() -> dict:
    """JSON Schema of migration.yaml, for editors (yaml-language-server) and docs."""
    schema = MigrationSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "airmigrate migration.yaml"
    return schema


def _parse_spec(spec_path: Path) -> MigrationSpec:
    try:
        raw = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(yaml)"
        raise SpecError(spec_path, where, f"not valid YAML ({getattr(exc, 'problem', exc)})",
                        "fix the YAML syntax (indentation, quotes, colons)") from None
    if not isinstance(raw, dict):
        raise SpecError(spec_path, "(document)", "must be a mapping of fields",
                        "write `field: value` lines: description, table, key, ...")
    try:
        return MigrationSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(document)"
        fix = FIXES.get(err["type"], "see the field's description in migration.schema.json").format(file=spec_path.name)
        raise SpecError(spec_path, field, err["msg"].removeprefix("Value error, "), fix) from None


def _require_file(folder: Path, name: str, field: str) -> Path:
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents:
        raise SpecError(folder / SPEC_FILE, field, f"'{name}' points outside the migration folder",
                        "name a file inside the folder")
    if not path.is_file():
        raise SpecError(folder / SPEC_FILE, field, f"file '{name}' does not exist",
                        f"create {folder / name} or correct the file name")
    return path


def _sql_file(folder: Path, named: str | None, field: str, optional: bool) -> str:
    """up/down: the named file, else `<field>.sql` when present; required unless operations generate the SQL."""
    name = named or f"{field}.sql"
    if named is None and optional and not (folder / name).is_file():
        return ""
    return _read_sql(folder, name, field, required=not optional)


def _read_sql(folder: Path, name: str, field: str, required: bool = False) -> str:
    text = _require_file(folder, name, field).read_text()
    if required and not text.strip():
        raise SpecError(folder / name, field, "the SQL file is empty", "write the SQL statements it should run")
    _check_syntax(folder / name, text, field)
    return text


PLACEHOLDER = re.compile(r"(?<!')%\(((?:lo|hi)(?:_\d+)?)\)s(?!')")


def bound_placeholders(text: str) -> str:
    """Quote psycopg placeholders into string literals (same line) so parsers accept the file; idempotent."""
    return PLACEHOLDER.sub(r"'%(\1)s'", text.replace("%%", "%"))


def parse_error_at(text: str, exc: pglast.parser.ParseError) -> tuple[int, str]:
    """(1-based line, message without the character index) of a pglast ParseError, whose second argument is
    the character index: lines are what a user can find in the file."""
    index = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
    return text.count("\n", 0, index) + 1, re.sub(r", at index \d+", "", str(exc).splitlines()[0])


def _check_syntax(path: Path, text: str, field: str) -> None:
    """PostgreSQL's own parser over the file (batch placeholders read as literals), so a typo stops this folder
    here, with its line, instead of failing at run time or in the middle of building every DAG."""
    parsable = bound_placeholders(text)
    try:
        pglast.parse_sql(parsable)
    except pglast.parser.ParseError as exc:
        line, message = parse_error_at(parsable, exc)
        raise SpecError(path, field, f"line {line}: {message}",
                        "correct the SQL (`airmigrate lint` lists every finding)") from None


def _check_backfill_placeholders(path: Path, text: str, key_columns: tuple[str, ...]) -> None:
    if len(key_columns) == 1:
        needed, example = ["%(lo)s", "%(hi)s"], f"WHERE {key_columns[0]} BETWEEN %(lo)s AND %(hi)s"
    else:
        needed = [f"%({b}_{i})s" for b in ("lo", "hi") for i in range(len(key_columns))]
        example = (f"WHERE ({', '.join(key_columns)}) BETWEEN ({', '.join(needed[:len(key_columns)])}) "
                   f"AND ({', '.join(needed[len(key_columns):])})")
    for placeholder in needed:
        if placeholder not in text:
            raise SpecError(path, "backfill.sql", f"no {placeholder} placeholder",
                            f"restrict the UPDATE to one batch: {example}")


def _expectations_file(spec_path: Path, spec: MigrationSpec, migration_id: str,
                       expectations_dir: Path | str | None) -> Path | None:
    if expectations_dir is None:
        return None
    path = Path(expectations_dir) / (spec.expectations or f"{migration_id}.json")
    if spec.expectations and not path.is_file():
        raise SpecError(spec_path, "expectations", f"'{path}' does not exist",
                        "create the suite file or correct the name")
    if path.is_file():
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SpecError(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
        return path
    return None


def _checksum(folder: Path, expectations_file: Path | None) -> str:
    """sha256 over every file of the migration (and its suite): a changed applied migration is detected."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if expectations_file:
        files.append(expectations_file)
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
