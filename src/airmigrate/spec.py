"""Reads a migration folder into a frozen, typed :class:`Migration`.

No database and no Airflow here: this runs while the dag-processor parses DAG files,
so it must be fast and side-effect free. Every error is a :class:`SpecError` naming
the file, the field and the fix, so a bad folder shows up in Airflow as an import
error a user can act on.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pglast
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airmigrate.errors import SpecError
from airmigrate.operations import Operation
from airmigrate.window import Window

SPEC_FILE = "migration.yaml"
FOLDER_NAME = re.compile(r"^[0-9]{4}_[a-z0-9_]+$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Airflow's cron presets (airflow.utils.dates.cron_presets) plus @once; @continuous makes no sense for a migration
CRON_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *",
                "@quarterly": "0 0 1 */3 *", "@yearly": "0 0 1 1 *"}
CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day of month", "1-31"), ("month", "1-12 or jan-dec"),
               ("day of week", "0-6 or sun-sat"))
CRON_FIX = ("write 5 fields, minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-6, 0 = "
            "Sunday), e.g. \"0 2 * * *\" for 02:00 every day, or a preset: @once, " + ", ".join(CRON_PRESETS))

IDENTIFIER_RULE = ("letters (a-z, A-Z), digits, _ and $ only, starting with a letter or _, at most 63 characters "
                   "(PostgreSQL's limit); lowercase is best, since unquoted SQL folds names to lowercase")
IDENTIFIER_WHY = ("such a name needs no quotes, so migration.yaml, your SQL files and the generated SQL all mean the "
                  "same object; an object whose real name needs quotes must be renamed in the database first")

Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern, description="A plain PostgreSQL identifier")]


class FieldProblem(ValueError):
    """A validator's complaint that carries its own fix (read by _parse_spec)."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.fix = fix


def identifier_problem(value: str) -> str | None:
    """Why `value` is not a plain identifier (IDENTIFIER), in words; None when it is one."""
    if IDENTIFIER.match(value):
        return None
    if not value:
        return "is empty"
    bad = [c for c in dict.fromkeys(value) if not re.match(r"[A-Za-z0-9_$]", c)]
    if bad:
        names = {" ": "a space", "\t": "a tab", ".": "a dot", "-": "a hyphen", '"': "a double quote",
                 "'": "a quote", ";": "a semicolon"}
        return "contains " + ", ".join(names.get(c, f"'{c}'") for c in bad)
    if not re.match(r"[A-Za-z_]", value[0]):
        return f"starts with '{value[0]}'"
    return f"is {len(value)} characters long"


def identifier_fix(value: str) -> str:
    suggestion = re.sub(r"[^A-Za-z0-9_$]+", "_", value).strip("_").lower() or "name"
    if not re.match(r"[A-Za-z_]", suggestion[0]):
        suggestion = "_" + suggestion
    return f"use a plain PostgreSQL identifier such as {suggestion[:63]}: {IDENTIFIER_RULE}. Why: {IDENTIFIER_WHY}"


def check_cron(value: str) -> str:
    """`value` as Airflow will read it: a preset or a 5-field cron that croniter (Airflow's cron library) accepts;
    the problem names the field that is out of range."""
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    expression = value.strip()
    if expression.startswith("@"):
        try:  # Airflow's presets, else croniter's own aliases (@midnight, @annually), as Airflow reads them
            if expression != "@once":
                croniter(CRON_PRESETS.get(expression, expression))
        except (CroniterBadCronError, ValueError):
            raise FieldProblem(f"'{value}' is not a preset Airflow knows", CRON_FIX) from None
        return value
    fields = expression.split()
    if len(fields) != 5:
        raise FieldProblem(f"'{value}' has {len(fields)} field(s), not the 5 of a cron expression", CRON_FIX)
    try:
        croniter(expression).get_next()
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        for i, ((name, allowed), text) in enumerate(zip(CRON_FIELDS, fields)):
            alone = " ".join(text if j == i else "*" for j in range(5))
            try:
                croniter(alone)
            except (CroniterBadCronError, ValueError):
                raise FieldProblem(f"'{value}': the {name} field '{text}' is not valid (allowed: {allowed})",
                                   CRON_FIX) from None
        if isinstance(exc, CroniterBadDateError):
            raise FieldProblem(f"'{value}' matches no date at all (its day of month never occurs in its month)",
                               CRON_FIX) from None
        raise FieldProblem(f"'{value}' is not a cron expression Airflow can schedule ({exc})", CRON_FIX) from None
    return value


# Limits of the settings a run may override (trigger form, CLI --param, the console): one place, used by the
# spec's fields, the DAG params and every check of a per-run value.
BATCH_SIZE_MAX, SHARDS_MAX, RATIO_MAX = 2_000_000, 64, 100


def setting_problem(name: str, value) -> str | None:
    """Why a per-run value of batch_size, shards or app_latency_ratio cannot apply (None when it can): what
    the trigger form, `--param` and the console refuse with, instead of clamping."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "batch_size" and not (number and value == int(value) and 1 <= value <= BATCH_SIZE_MAX):
        return f"give a whole number of rows from 1 to {BATCH_SIZE_MAX:,}"
    if name == "shards" and not (number and value == int(value) and 1 <= value <= SHARDS_MAX):
        return f"give a whole number of parallel backfill tasks from 1 to {SHARDS_MAX}"
    if name == "app_latency_ratio" and value is not None and not (number and 1 < value <= RATIO_MAX):
        return f"give a ratio above 1 and at most {RATIO_MAX} (e.g. 1.25), or none for full speed"
    return None


class Throttle(BaseModel):
    """How the backfill protects the application. Pacing (airmigrate.pacing): a duty cycle set once a second
    so the application's statements stay within `app_latency_ratio` of their latency without us. Hard stops,
    checked before each batch whatever the pacer says: a breach pauses the shard with backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_latency_ratio: float | None = Field(
        1.25, gt=1, le=RATIO_MAX,
        description="Keep the application's mean statement latency within this multiple of its latency "
                    "while the backfill pauses (measured with pg_stat_statements for the other roles, "
                    "re-measured every probe_every_s). null: full speed, no pacing.")
    probe_every_s: float = Field(30, ge=5, le=3600, description="Pause every shard this often to re-measure the "
                                                                 "application's own latency (its baseline)")
    probe_seconds: float = Field(1, gt=0, le=30, description="How long each such pause lasts")
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
    max_transaction_age_s: float | None = Field(300, description="Pause while another transaction is older")
    max_lock_waiters: int | None = Field(5, description="Pause while more sessions wait for locks")
    pause_during_autovacuum: bool = Field(True, description="Pause while autovacuum works on the table")
    max_wal_backlog_mb: float | None = Field(
        1024, description="Pause while replication slots hold back more WAL than this (a slow consumer "
                          "would fill the disk)")
    max_pause_s: float = Field(30, gt=0, description="Longest single pause (exponential backoff up to this)")

    @field_validator("external_query")
    @classmethod
    def _one_select(cls, value: str | None) -> str | None:
        """Stored as pglast rendered it: one SELECT, nothing else can ride along."""
        if value is None:
            return value
        try:
            statements = pglast.parse_sql(value)
        except pglast.parser.ParseError as exc:
            raise ValueError(f"external_query does not parse: {exc}") from None
        if len(statements) != 1 or type(statements[0].stmt).__name__ != "SelectStmt":
            raise ValueError("external_query must be exactly one SELECT returning one number")
        return pglast.stream.RawStream()(statements[0])

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
        """Store each expression as pglast rendered it: the trigger runs what was checked, never the raw text."""
        from airmigrate.operations.base import check_expression

        for column in value:
            if not IDENTIFIER.match(column):
                raise ValueError(f"sync: '{column}' is not a plain column name")
        return {column: check_expression(expression) for column, expression in value.items()}

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

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return value if value is None else check_cron(value)

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
            import difflib

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
        _check_backfill_placeholders(folder / spec.backfill.sql, texts["backfill.sql"], spec.key_columns)
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


QUALIFIED_NAME = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$"  # add_foreign_key.references_table


def _first_error(errors: list[dict]) -> dict:
    """The error to show: for a field declared as a union (`key`: name or list of names), the branch matching
    the value's type, not "Input should be a valid list" for a name."""
    first = errors[0]
    labels = [i for i, p in enumerate(first["loc"]) if isinstance(p, str) and not re.fullmatch(r"\w+", p)]
    if not labels:
        return first
    union = first["loc"][:labels[0]]
    branches = [e for e in errors if e["loc"][:len(union)] == union]
    return next((e for e in branches if not e["type"].endswith("_type")), first)


def _name_problem(value: str, dotted: bool = False) -> tuple[str, str]:
    """(problem, fix) for a value that is not a plain identifier (or, `dotted`, schema.name)."""
    parts = value.split(".") if dotted and value.count(".") == 1 else [value]
    for part in parts:
        if (problem := identifier_problem(part)) is not None:
            subject = f"'{value}'" if part == value else f"'{part}' in '{value}'"
            return f"{subject} {problem}, so it is not a plain identifier", identifier_fix(part)
    return f"'{value}' is not a plain identifier", identifier_fix(value)


# what each operation changes: columns of the migration's table, other tables, index/constraint names
_COLUMN_FIELDS = {"add_column": ("column",), "rename_column": ("column", "to"), "change_column_type": ("column",),
                  "drop_column": ("column",), "split_table": ("columns",)}
_TABLE_FIELDS = {"split_table": ("new_table",), "drop_table": ("table",)}
_NAME_FIELDS = {"add_index": ("name",), "add_unique": ("name",), "add_check": ("name",), "add_foreign_key": ("name",)}


def _repeated(values: list[str]) -> tuple[int, int] | None:
    """(first index, repeat index) of the first value listed twice."""
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            return seen[value], i
        seen[value] = i
    return None


def _check_no_duplicates(spec_path: Path, spec: MigrationSpec) -> None:
    """A column changed by two operations, an index or constraint name used twice, a key or backfill column
    listed twice: each would half-run (the second statement fails, or silently does nothing, after the first
    one changed the table), so the folder is refused here."""
    for field, values in (("key", spec.key if isinstance(spec.key, list) else []),
                          ("backfill.columns", spec.backfill.columns if spec.backfill else []),
                          ("backfill.reads", spec.backfill.reads if spec.backfill else [])):
        if (pair := _repeated(values)) is not None:
            first, again = pair
            raise SpecError(spec_path, f"{field}[{again}]", f"'{values[again]}' is listed twice "
                            f"({field}[{first}] too)", f"list each column once: [{', '.join(dict.fromkeys(values))}]")
    for kinds, what in ((_COLUMN_FIELDS, "column"), (_TABLE_FIELDS, "table"), (_NAME_FIELDS, "name")):
        owner: dict[str, tuple[int, str]] = {}
        for i, op in enumerate(spec.operations):
            for field in kinds.get(op.op, ()):
                values = getattr(op, field)
                for j, value in enumerate(values if isinstance(values, list) else [values]):
                    where = f"operations[{i}].{field}" + (f"[{j}]" if isinstance(values, list) else "")
                    if value in owner:
                        _refuse_duplicate(spec_path, what, value, where, i, op.op, *owner[value])
                    owner[value] = (i, op.op)


def _refuse_duplicate(spec_path: Path, what: str, value: str, where: str, index: int, op: str, first_index: int,
                      first_op: str) -> None:
    earlier = f"operations[{first_index}] ({first_op})"
    if what == "name":
        raise SpecError(spec_path, where, f"the name '{value}' is already used by {earlier}; PostgreSQL would refuse "
                        "the second one after the first was created", f"give each index and constraint its own "
                        f"name, e.g. {value[:61]}_2")
    if what == "table":
        raise SpecError(spec_path, where, f"table '{value}' is already changed by {earlier}",
                        "change each table in one operation; put a further change in a new migration folder")
    if first_index == index:
        raise SpecError(spec_path, where, f"column '{value}' is named twice in this {op}",
                        "name each column once")
    fix = (f"keep one {op} for '{value}' with its final definition" if op == first_op else
           f"change '{value}' in one operation only; put the {op} in a new migration folder, "
           "run after this one is applied")
    raise SpecError(spec_path, where, f"column '{value}' is already changed by {earlier}; two operations on one "
                    "column in one migration conflict (the second runs against the first one's half-done "
                    "expand)", fix)


def check_transform_file(path: Path, shown: Path | None = None) -> None:
    """transform.py compiles and defines a top-level `def transform(df)` callable with one argument; read with
    `ast`, never imported, so parsing DAGs runs no user code."""
    shown = shown or path
    fix = ("define it at the top level of the file: `def transform(df):` taking the batch as a pandas DataFrame "
           "and returning one with the key and every column in backfill.columns")
    try:
        with warnings.catch_warnings():  # e.g. SyntaxWarning for an invalid escape: the worker will say it
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(), filename=str(shown))
    except SyntaxError as exc:
        raise SpecError(shown, "backfill.transform", f"line {exc.lineno}: Python syntax error: {exc.msg}",
                        "correct the Python syntax (`python -m py_compile` shows the same error)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SpecError(shown, "backfill.transform", f"not a Python source file ({exc})",
                        "save it as UTF-8 Python source") from None
    defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == "transform"]
    if not defs:
        nested = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and n.name == "transform"), None)
        others = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        bound = next((n for n in tree.body if "transform" in _bound_names(n)), None)
        problem = "no top-level function `transform`"
        if nested:
            problem += f" (line {nested.lineno} defines one inside a class, function or block)"
        elif bound:
            problem += (f" (line {bound.lineno} binds the name without `def`, which cannot be checked without "
                        "running the file)")
        elif others:
            problem += f"; the file defines {', '.join(others)}"
        raise SpecError(shown, "backfill.transform", problem, fix)
    node = defs[-1]
    if isinstance(node, ast.AsyncFunctionDef):
        raise SpecError(shown, "backfill.transform", f"line {node.lineno}: `transform` is `async def`", fix)
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    required_kw = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    signature = f"def transform({ast.unparse(args)})"
    if not (positional or args.vararg):
        problem = "takes no argument"
    elif required > 1:
        problem = f"needs {required} arguments"
    elif required_kw:
        problem = f"needs the keyword argument(s) {', '.join(required_kw)}"
    else:
        return
    raise SpecError(shown, "backfill.transform", f"line {node.lineno}: `{signature}` {problem}; airmigrate calls "
                    "transform(df) with one DataFrame per batch", "give it exactly one parameter: `def transform(df):`")


def _bound_names(node: ast.stmt) -> set[str]:
    """Names a top-level assignment or import binds."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return {x.id for target in targets for x in ast.walk(target) if isinstance(x, ast.Name)}


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
        from airmigrate.expectation_registry import check_suite_file  # shape + GX expectation types, no GX import
        check_suite_file(path)
        return path
    return None


def file_checksums(migration: "Migration") -> dict[str, str]:
    """sha256 per file (folder-relative names; the suite as `expectations/<name>`): the history keeps them so
    a drift report can say which file changed."""
    files = {str(p.relative_to(migration.folder)): p for p in _migration_files(migration.folder)}
    if migration.expectations_file:
        files[f"expectations/{migration.expectations_file.name}"] = migration.expectations_file
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in sorted(files.items())}


def _migration_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _checksum(folder: Path, expectations_file: Path | None) -> str:
    """sha256 over every file of the migration (and its suite): a changed applied migration is detected."""
    digest = hashlib.sha256()
    files = _migration_files(folder)
    if expectations_file:
        files.append(expectations_file)
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
