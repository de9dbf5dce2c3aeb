"""Reads a migration folder into a frozen, typed :class:`Migration`.

No database and no Airflow here: this runs while the dag-processor parses DAG files,
so it must be fast and side-effect free. Every error is a :class:`SpecError` naming
the file, the field and the fix, so a bad folder shows up in Airflow as an import
error a user can act on.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airmigrate import engines
from airmigrate.engines.base import ONLINE, Executor
from airmigrate.engines.target import configured_default_schema
from airmigrate.errors import SpecError
from airmigrate.operations import ROW_OPERATIONS, Operation

# The fields' names live in spec_fields.py, the folder checks in spec_checks.py; callers import them from here.
from airmigrate.spec_checks import (  # noqa: F401
    PLACEHOLDER,
    QUALIFIED_NAME,
    _check_backfill_placeholders,
    _check_no_duplicates,
    _checksum,
    _expectations_file,
    _first_error,
    _name_problem,
    _read_sql,
    _require_file,
    _sql_file,
    bound_placeholders,
    check_transform_file,
    engine_variant,
    file_checksums,
)
from airmigrate.spec_fields import (  # noqa: F401
    BATCH_SIZE_MAX,
    CRON_FIELDS,
    CRON_FIX,
    CRON_PRESETS,
    EXECUTORS,
    FOLDER_NAME,
    IDENTIFIER,
    IDENTIFIER_RULE,
    IDENTIFIER_WHY,
    RATIO_MAX,
    SHARDS_MAX,
    SPEC_FILE,
    FieldProblem,
    Identifier,
    check_cron,
    check_executor,
    identifier_fix,
    identifier_problem,
    setting_problem,
)
from airmigrate.window import Window


class Throttle(BaseModel):
    """How the backfill protects the application. Pacing (airmigrate.pacing): a duty cycle set once a second
    so the application's statements stay within `app_latency_ratio` of their latency without us. Hard stops,
    checked before each batch whatever the pacer says: a breach pauses the shard with backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_latency_ratio: float | None = Field(
        1.25, gt=1, le=RATIO_MAX,
        description="Keep the application's mean statement latency within this multiple of its latency "
                    "while the backfill pauses (measured with pg_stat_statements for the other roles, "
                    "re-measured every probe_every_s; MySQL / MariaDB: its transactions' age from "
                    "information_schema, performance_schema when on). null: full speed, no pacing.")
    probe_every_s: float = Field(30, ge=5, le=3600, description="Pause every shard this often to re-measure the "
                                                                 "application's own latency (its baseline)")
    probe_seconds: float = Field(1, gt=0, le=30, description="How long each such pause lasts")
    lock_hold_s: float = Field(
        0.02, gt=0, le=60,
        description="While pacing: the longest a batch holds its row locks (its target duration, below "
                    "target_batch_seconds when that is longer). An application transaction that touches a row of a "
                    "running batch waits for the batch's end: short batches keep that wait short and the share of "
                    "the table locked at once small")
    cpus: int | None = Field(None, ge=1, le=4096, description="The database server's cores, for the run-queue "
                                                              "signal (default: this machine's when the "
                                                              "database is local, else max_parallel_workers)")
    cpu_pressure: bool = Field(False, description="Also read /proc/pressure/cpu (only when airmigrate runs on the "
                                                  "database host)")
    external_query: str | None = Field(None, description="A SELECT returning one number (your SLO metric); above "
                                                         "external_max slows the backfill (gh-ost's throttle-query)")
    external_url: str | None = Field(None, description="An http(s) URL answering one number; above external_max "
                                                       "slows the backfill (gh-ost's throttle-http)")
    external_max: float | None = Field(None, description="The limit for external_query / external_url")
    max_replication_lag_s: float | None = Field(1.5, description="Pause while a replica lags more (gh-ost: 1.5 s)")
    replicas: tuple[str, ...] = Field(
        (), description="MySQL / MariaDB: the replicas whose lag max_replication_lag_s bounds, as host:port (reached "
                        "with the target's user and password). A MySQL primary does not know its replicas' lag: "
                        "each is asked (SHOW REPLICA STATUS). PostgreSQL reads it on the primary: leave empty")
    max_transaction_age_s: float | None = Field(
        300, description="Pause while another transaction in the target database is older")
    max_lock_waiters: int | None = Field(
        5, description="Pause while more sessions of the target database wait for locks")
    pause_during_autovacuum: bool = Field(True, description="Pause while autovacuum works on the table")
    max_wal_backlog_mb: float | None = Field(
        1024, description="Pause while replication slots hold back more WAL than this (a slow consumer "
                          "would fill the disk)")
    max_pause_s: float = Field(30, gt=0, description="Longest single pause (exponential backoff up to this)")
    max_threads_running: int = Field(25, ge=1, le=100_000,
                                     description="MySQL / MariaDB, executor: pt-osc: pause the copy while more "
                                                 "threads run (its --max-load Threads_running)")
    critical_threads_running: int = Field(50, ge=1, le=100_000,
                                          description="MySQL / MariaDB, executor: pt-osc: abort the copy (its "
                                                      "triggers and shadow table removed) while more threads run "
                                                      "(its --critical-load Threads_running)")

    @field_validator("external_query")
    @classmethod
    def _one_select(cls, value: str | None) -> str | None:
        """Stored as the engine's parser rendered it: one SELECT, nothing else can ride along."""
        if value is None:
            return value
        try:
            return engines.current().one_select(value)
        except ValueError as exc:
            raise ValueError(f"external_query {exc}") from None

    @field_validator("replicas")
    @classmethod
    def _host_port(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """host or host:port only: a URL could carry a password into the spec file (the target's are used)."""
        for n, replica in enumerate(value, 1):
            host, _, port = replica.rpartition(":") if ":" in replica else (replica, "", "3306")
            if not host or "@" in replica or "/" in replica or not port.isdigit():
                shown = "a URL with a user" if "@" in replica else repr(replica)  # never echo a password
                raise ValueError(f"replicas: entry {n} ({shown}) is not host:port (e.g. replica1.internal:3306); the "
                                 "target's user and password are used, never one written here")
        return value

    @field_validator("external_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("external_url must be an http:// or https:// URL answering one number")
        return value

    @model_validator(mode="after")
    def _external_needs_max(self):
        if (self.external_query or self.external_url) and self.external_max is None:
            raise ValueError("external_query / external_url need external_max: the value above which the "
                             "backfill slows down")
        if self.external_query and self.external_url:
            raise ValueError("give external_query or external_url, not both")
        return self


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
    throttle: "Throttle | None" = Field(
        default_factory=lambda: Throttle(),
        description="Protect the application: pacing by its latency (app_latency_ratio, 1.25 by default) and hard "
                    "stops (replication lag, old transactions, lock waiters, autovacuum, WAL backlog). null: no "
                    "protection at all.")
    sync: dict[str, str] = Field(default_factory=dict,
                                 description="column: expression. A trigger applies it to rows the application "
                                             "writes during the migration (installed before the first batch, "
                                             "removed at cleanup), so derived values never go stale.")

    @field_validator("sync")
    @classmethod
    def _sync(cls, value: dict[str, str]) -> dict[str, str]:
        """Store each expression as the engine's parser rendered it: the trigger runs what was checked, never the
        raw text."""
        for column in value:
            if not IDENTIFIER.match(column):
                raise ValueError(f"sync: '{column}' is not a plain column name")
        return {column: engines.current().check_expression(expression) for column, expression in value.items()}

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
    author: str | None = Field(None, max_length=200, description="Who wrote it (the report and the changelog show it).")
    date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="When it was written, YYYY-MM-DD.")
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
    comments: dict[Identifier, str] = Field(
        default_factory=dict, description="column: comment, set with COMMENT ON when the migration is applied "
                                          "(columns it adds get '<id>: <description>' unless given here).")
    backup: Literal["auto", "table", "columns", "none"] = Field(
        "auto", description="What the backup stage takes. auto: the columns the backfill overwrites or the "
                            "contract drops, plus a pg_dump of the table only before something that drops or "
                            "rewrites data, nothing for index and constraint changes; table: always pg_dump; "
                            "columns: the snapshot only; none: nothing (lint asks for an acknowledgement when "
                            "data is dropped).")
    keep_backups: int | None = Field(None, ge=1, le=1000, description="Keep only this many pg_dump files of this "
                                                                      "migration (the newest); none: keep all.")
    batch_size: int = Field(10_000, ge=1, le=BATCH_SIZE_MAX, description="Rows per backfill batch.")
    shards: int = Field(2, ge=1, le=SHARDS_MAX, description="Parallel backfill tasks (mapped Airflow tasks).")
    lock_timeout_ms: int = Field(500, ge=10, le=600_000, description="lock_timeout for every DDL statement.")
    statement_timeout_ms: int = Field(
        600_000, ge=100, description="statement_timeout for every DDL statement and backfill batch."
    )
    ddl_attempts: int = Field(8, ge=1, le=50, description="Attempts per DDL group on lock timeout (55P03).")
    executor: str = Field(ONLINE, description="How an ALTER the server can only do by copying the table runs. "
                                              + "; ".join(f"{k}: {v}" for k, v in EXECUTORS.items()) + ".")
    chunk_time: float = Field(0.5, gt=0, le=60, description="executor: pt-osc: seconds each chunk of copied rows "
                                                            "should take (its --chunk-time); its --max-load and "
                                                            "--critical-load come from backfill.throttle's "
                                                            "max_threads_running and critical_threads_running")
    schedule: str | None = Field(None, description="Cron expression to run in an off-peak window; none = manual.")
    window: Window | None = Field(None, description="Off-peak window: outside it the backfill finishes the batch "
                                                    "in hand and waits (without a worker slot) for the next one")
    out_of_order: bool = Field(False, description="Allow this migration to start while an earlier folder (by folder "
                                                  "order) is not applied yet; default: refused until every earlier "
                                                  "one is applied (or expanded)")
    depends_on: list[Annotated[str, Field(pattern=FOLDER_NAME.pattern)]] = Field(
        default_factory=list, description="Migration folders (e.g. 0003_add_orders_status) that must be applied (or "
                                          "expanded) before this one starts; a rollback of one of them waits for "
                                          "this one to be rolled back first")

    @field_validator("depends_on", mode="before")
    @classmethod
    def _depends_on(cls, value):
        for i, entry in enumerate(value if isinstance(value, list) else []):
            if isinstance(entry, str) and not FOLDER_NAME.match(entry):
                raise FieldProblem(f"depends_on[{i}]: '{entry}' is not a migration folder name (NNNN_slug)",
                                   "name the folder exactly, e.g. 0003_add_orders_status (4 digits, lowercase slug)")
        return value

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2:
            raise FieldProblem(f"'{value}' has {len(parts)} dot-separated parts",
                               "write `table` or `schema.table` (one dot at most), plain identifiers: "
                               + IDENTIFIER_RULE)
        for part, role in zip(parts, ("schema", "table") if len(parts) == 2 else ("table",)):
            if (problem := identifier_problem(part)) is not None:
                raise FieldProblem(f"the {role} name '{part}' {problem}, so it is not a plain identifier",
                                   identifier_fix(part))
        return value

    @field_validator("executor", mode="before")
    @classmethod
    def _executor(cls, value):
        return check_executor(value)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return value if value is None else check_cron(value)

    @model_validator(mode="after")
    def _composite_key_limits(self):
        if isinstance(self.key, list) and (self.operations or (self.backfill and self.backfill.transform)):
            raise ValueError("operations and pandas transforms need a single-column `key`")
        return self

    @model_validator(mode="after")
    def _row_operations_alone(self):
        """delete_rows batches and rolls back over its own rows (the rollback walks the archive's keys): it is the
        migration's only change."""
        row_ops = [op.op for op in self.operations if op.op in ROW_OPERATIONS]
        if row_ops and (len(self.operations) > 1 or self.backfill is not None):
            raise ValueError(f"{row_ops[0]} must be the migration's only operation, without `backfill`: put the "
                             "other changes in a migration of their own (`airmigrate new`)")
        return self

    def executor_settings(self) -> Executor:
        """What the engine's DDL executor is told: the executor, pt-osc's chunk time and loads (from the
        backfill's throttle when there is one, else its defaults)."""
        throttle = (self.backfill.throttle if self.backfill else None) or Throttle()
        return Executor(self.executor, self.chunk_time, f"Threads_running={throttle.max_threads_running}",
                        f"Threads_running={throttle.critical_threads_running}")

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(self.key) if isinstance(self.key, list) else (self.key,)

    @property
    def schema_name(self) -> str:
        """The schema `table` names, else where a bare name lives on the configured target (PostgreSQL: public;
        MySQL: the target's database)."""
        return self.declared_schema or configured_default_schema()

    @property
    def declared_schema(self) -> str | None:
        """The schema `table` names, None for a bare name (the engine's default then: public, or MySQL's
        database)."""
        return self.table.split(".")[0] if "." in self.table else None

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


FIXES = {
    "missing": "add the field to {file}",
    "extra_forbidden": "remove it or correct its spelling; allowed fields are listed in migration.schema.json",
    "string_pattern_mismatch": f"use a plain PostgreSQL identifier: {IDENTIFIER_RULE}",
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

    @property
    def spec_path(self) -> Path:
        """Its migration.yaml (findings name it with the field)."""
        return self.folder / SPEC_FILE


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
    _check_no_duplicates(spec_path, spec)
    for i, dependency in enumerate(spec.depends_on):
        if dependency == folder.name:
            raise SpecError(spec_path, f"depends_on[{i}]", "names this migration itself",
                            "remove it; list the migrations that must be applied before this one")
        if dependency in spec.depends_on[:i]:
            raise SpecError(spec_path, f"depends_on[{i}]", f"'{dependency}' is listed twice",
                            "list each migration once")
        if not (folder.parent / dependency).is_dir():
            siblings = sorted(p.name for p in folder.parent.iterdir() if FOLDER_NAME.match(p.name))
            close = difflib.get_close_matches(dependency, siblings, n=1)
            raise SpecError(spec_path, f"depends_on[{i}]", f"there is no migration folder '{dependency}' in "
                            f"{folder.parent}", f"did you mean '{close[0]}'?" if close else
                            "name an existing migration folder")
    texts = {
        "up": _sql_file(folder, spec.up, "up", optional=bool(spec.operations)),
        "down": _sql_file(folder, spec.down, "down", optional=bool(spec.operations)),
        "cleanup": _read_sql(folder, spec.cleanup, "cleanup") if spec.cleanup else None,
        "backfill.sql": None,
    }
    transform_file = None
    if spec.backfill and spec.backfill.sql:
        texts["backfill.sql"] = _read_sql(folder, spec.backfill.sql, "backfill.sql", required=True)
        _check_backfill_placeholders(folder / engine_variant(folder, spec.backfill.sql), texts["backfill.sql"],
                                     spec.key_columns)
    if spec.backfill and spec.backfill.transform:
        transform_file = _require_file(folder, spec.backfill.transform, "backfill.transform")
        check_transform_file(transform_file, folder / spec.backfill.transform)
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
        err = _first_error(exc.errors())
        # drop the labels pydantic gives union branches ('constrained-str', 'list[constrained-str]'): not fields
        field = ".".join(str(p) for p in err["loc"] if not isinstance(p, str) or re.fullmatch(r"\w+", p))
        problem = err["msg"].removeprefix("Value error, ")
        fix = FIXES.get(err["type"], "see the field's description in migration.schema.json").format(file=spec_path.name)
        reason = (err.get("ctx") or {}).get("error")
        if isinstance(reason, FieldProblem):
            fix = reason.fix
        elif err["type"] == "string_pattern_mismatch" and isinstance(err.get("input"), str) \
                and err["ctx"]["pattern"] in (IDENTIFIER.pattern, QUALIFIED_NAME):
            problem, fix = _name_problem(err["input"], dotted=err["ctx"]["pattern"] == QUALIFIED_NAME)
        raise SpecError(spec_path, field or "(document)", problem, fix) from None
