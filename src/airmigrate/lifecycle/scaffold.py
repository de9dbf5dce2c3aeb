"""`airmigrate new <slug>`: the next numbered migration folder, its expectation suite, and the next steps.

What it writes loads and passes `airmigrate lint` as it is: the options' values where they are given,
placeholders that parse where they are not (listed in the file and in the output), and every optional
field as a commented line saying what it does. Nothing is written unless everything can be: the folder
is made in a hidden staging folder, loaded back, then renamed into place.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airmigrate import settings
from airmigrate.errors import AirmigrateError, SpecError
from airmigrate.operations.base import check_type
from airmigrate.spec import identifier_fix, identifier_problem, load_migration
from airmigrate.validation.suites import load_suite_file

OPS = ("sql", "add_column", "rename_column", "change_column_type", "split_table", "add_index", "add_check",
       "add_foreign_key", "add_unique", "drop_column", "drop_table", "delete_rows", "move_rows", "rename_table", "rename_index",
       "rename_constraint", "create_table")
SLUG = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
NUMBERED = re.compile(r"^([0-9]{4})_(.+)$")
# The migration id names PostgreSQL objects limited to 63 bytes: triggers and functions am_sync_<id>_<n>,
# am_back_<id>_<n>, the rollback snapshot snapshot_<id>. Longer, they are cut, and two of one migration
# could end up with the same name.
MAX_ID = 63 - len("am_sync__99")
MAX_SLUG = MAX_ID - len("0000_")
SQL_TABLE = "my_table"  # --op sql without --table: a name that cannot touch a real table by accident
DEFAULT_COLUMN = {"sql": "new_column", "add_column": "new_column", "rename_column": "old_name",
                  "drop_column": "old_column"}
WHY_DOWN = ("-- Why it is required: when production is in trouble after this migration, the rollback is the way\n"
            "-- back, and a migration without one cannot be rolled back.\n")


@dataclass(frozen=True)
class Scaffolded:
    """What `new` made: the id, the files, and the placeholders the user still has to replace."""

    migration_id: str
    op: str
    table: str
    folder: Path
    files: tuple[Path, ...]
    placeholders: tuple[str, ...]

    def report(self) -> str:
        lines = [f"created {self.migration_id} ({self.op} on {self.table}):"]
        lines += [f"  {_shown(p)}" for p in self.files]
        if self.placeholders:
            lines.append("placeholders to replace (they parse and lint, but name nothing real yet): "
                         + ", ".join(self.placeholders))
        folder = _shown(self.folder)
        lines += [
            "next steps:",
            f"  1. edit {folder}/migration.yaml, its SQL files and {_shown(self.files[-1])}: say what the "
            "migration does and add the expectations that prove it",
            f"  2. airmigrate lint {folder}        # squawk + airmigrate's rules; exit 0 when clean",
            f"  3. airmigrate plan {self.migration_id} --offline   # each statement's lock and effect "
            "(--sql: the exact SQL; without --offline: rows, batches, ETA from the target)",
            f"  4. airmigrate run {self.migration_id}              # through Airflow against the target, "
            "or trigger the DAG in the Airflow UI",
        ]
        return "\n".join(lines)


def new_migration(slug: str, op: str = "sql", table: str | None = None, column: str | None = None,
                  type_: str | None = None, to: str | None = None, key: str = "id",
                  migrations_dir: Path | None = None, expectations_dir: Path | None = None) -> Scaffolded:
    """Create migrations/<next number>_<slug>/ and expectations/<id>.json; AirmigrateError (nothing made) when
    the slug or an option is wrong or the migration exists."""
    check_slug(slug)
    if op not in OPS:
        raise AirmigrateError(f"--op {op!r} is not an operation airmigrate knows; use one of: {', '.join(OPS)}")
    if table is None and op != "sql":
        raise AirmigrateError(f"--op {op} needs --table: the table the operation changes, e.g. "
                              f"`airmigrate new {slug} --op {op} --table orders`. Nothing was created")
    table = table or SQL_TABLE
    placeholders = [f"table {SQL_TABLE} (give --table)"] if table == SQL_TABLE else []
    _check_table(table)
    _check_name("--key", key)
    if column is None:
        column = DEFAULT_COLUMN.get(op, "column_name")
        if op not in ("drop_table", "delete_rows", "move_rows", "rename_table", "rename_index",
       "rename_constraint", "create_table"):
            placeholders.append(f"column {column} (give --column)")
    _check_name("--column", column)
    if op == "rename_column" and to is None:
        to = f"{column}_new"[:63]
        placeholders.append(f"new name {to} (give --to)")
    if to is not None:
        _check_name("--to", to)
    type_ = _check_type(type_ or "text")

    migrations_dir = Path(migrations_dir or settings.migrations_dir())
    expectations_dir = Path(expectations_dir or settings.expectations_dir())
    migration_id = f"{next_number(migrations_dir, slug):04d}_{slug}"
    folder = migrations_dir / migration_id
    suite_path = expectations_dir / f"{migration_id}.json"
    if suite_path.exists():
        raise AirmigrateError(f"{suite_path} already exists (a suite for a migration that is not in "
                              f"{migrations_dir}?): move or delete it, then run `airmigrate new` again. "
                              "Nothing was created")

    texts, expectations, more = render(migration_id, slug, op, table, key, column, type_, to)
    placeholders += more
    suite = {"name": migration_id, "expectations": expectations}
    _write(folder, texts, suite_path, _suite_text(suite))
    files = tuple(folder / name for name in texts) + (suite_path,)
    return Scaffolded(migration_id, op, table, folder, files, tuple(placeholders))


def check_slug(slug: str) -> None:
    """Lowercase words of letters and digits joined by single underscores, short enough for every name made
    from the id (DAG ids, triggers, the snapshot table)."""
    suggestion = re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", slug.lower())).strip("_") or "add_orders_status"
    numbered = NUMBERED.match(slug)
    if numbered and SLUG.match(numbered.group(2)):
        raise AirmigrateError(f"slug {slug!r} starts with a number: give the slug only, e.g. "
                              f"`airmigrate new {numbered.group(2)}`; the next number is chosen for you")
    if "__" in slug:
        raise AirmigrateError(f"slug {slug!r} contains '__', which airmigrate keeps for its own DAG ids "
                              f"(<id>__rollback): use single underscores, e.g. `airmigrate new {suggestion}`")
    if not SLUG.match(slug):
        raise AirmigrateError(f"slug {slug!r} is not lowercase letters, digits and single underscores "
                              f"(it becomes the folder name and the DAG id): use e.g. `airmigrate new {suggestion}`")
    if len(slug) > MAX_SLUG:
        raise AirmigrateError(f"slug {slug!r} is {len(slug)} characters long; at most {MAX_SLUG} fit, since the "
                              "migration id names PostgreSQL objects of at most 63 bytes (its triggers and its "
                              f"snapshot table): use a shorter one, e.g. `airmigrate new {slug[:MAX_SLUG].rstrip('_')}`")


def next_number(migrations_dir: Path, slug: str) -> int:
    """Highest 4-digit prefix of the folders there + 1; refuses a slug that already has a folder."""
    numbers = []
    if migrations_dir.is_dir():
        for path in sorted(migrations_dir.iterdir()):
            match = NUMBERED.match(path.name)
            if not (match and path.is_dir()):
                continue
            if match.group(2) == slug:
                raise AirmigrateError(f"migration {path} already exists: edit it, or choose another slug for a "
                                      "new migration. Nothing was created")
            numbers.append(int(match.group(1)))
    number = max(numbers, default=0) + 1
    if number > 9999:
        raise AirmigrateError(f"{migrations_dir} already holds migration 9999: the 4-digit numbers are used up")
    return number


# -- rendering ------------------------------------------------------------------------------------------

def render(migration_id: str, slug: str, op: str, table: str, key: str, column: str, type_: str,
           to: str | None) -> tuple[dict[str, str], list[dict], list[str]]:
    """({file name: text}, the suite's expectations, further placeholders) of one new migration."""
    table_name = table.split(".")[-1]
    expectations = [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": key}}]
    placeholders: list[str] = []
    if op == "sql":
        expression = f"{key}::{type_}"
        placeholders.append(f"backfill value {expression} (backfill.sql)")
        summary = f"raw SQL adding {column} to {table}"
        body = _sql_body(column, expression)
        files = {"up.sql": _up_sql(migration_id, table, column, type_),
                 "backfill.sql": _backfill_sql(table, key, column, expression),
                 "down.sql": _down_sql_raw(migration_id, table, column)}
        expectations.append({"type": "expect_column_to_exist", "kwargs": {"column": column}})
    else:
        summary, body, more = _operation(op, table, table_name, key, column, type_, to)
        placeholders += more
        files = {"down.sql": _down_sql_generated(migration_id)}
        if op in ("delete_rows", "move_rows"):  # the suite proves it: no row matches any more
            expectations.append({"type": "unexpected_rows_expectation", "kwargs": {
                "unexpected_rows_query": f"SELECT {_sql_name(key)} FROM {{batch}} WHERE {_sql_name(key)} < 0",
                "description": "no row matches the delete_rows condition any more (keep it equal to `where`)"}})
        if op in ("add_column", "rename_column"):
            expectations.append({"type": "expect_column_to_exist",
                                 "kwargs": {"column": column if op == "add_column" else to}})
    description = f"{slug.replace('_', ' ').capitalize()} ({summary})."
    spec = _header(migration_id, description, table, key) + body
    return {"migration.yaml": spec, **files}, expectations, placeholders


def _author() -> str:
    """The git user when there is one (who commits the folder), else the OS user."""
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or getpass.getuser()


def _header(migration_id: str, description: str, table: str, key: str) -> str:
    return f"""\
# yaml-language-server: $schema=../../migration.schema.json
# {migration_id}, made by `airmigrate new`. Every field: migration.schema.json, README.md "Writing a migration".
# description: what changes and why, in a sentence or two; it is the DAG's docs in the Airflow UI.
description: {_q(description)}
author: {_q(_author())}
date: "{datetime.date.today().isoformat()}"
table: {_q(table):<22} # the table it changes: name or schema.name
key: {_q(key):<24} # batching key: primary key or unique NOT NULL column
batch_size: 10000             # rows per backfill batch (the DAG param batch_size overrides it per run)
lock_timeout_ms: 500          # lock_timeout of every DDL statement; retried with backoff on a lock timeout
# shards: 2                   # parallel backfill tasks (mapped Airflow tasks)
# statement_timeout_ms: 600000   # of every DDL statement and backfill batch
# schedule: "0 2 * * *"       # cron: start in an off-peak window (default: manual trigger only)
# window: {{start: "01:00", end: "05:00", timezone: UTC}}   # backfill only inside this window
# approval: true              # wait for a human before the contract step (default: when it drops anything)
# cleanup: cleanup.sql        # the contract step, run only after validation passed
# acknowledge:                # a lint rule broken on purpose, and why (reviewed like code)
#   - {{rule: require-concurrent-index-creation, reason: "audit_log has 300 rows; a plain index is fine"}}
"""


def _sql_body(column: str, expression: str) -> str:
    return f"""\
# up: up.sql                  # the expand SQL (default up.sql); down: down.sql for the rollback (default down.sql)
backfill:
  sql: backfill.sql           # one UPDATE per batch, bounded by %(lo)s and %(hi)s (README "The backfill contract")
  columns: [{column}]{' ' * max(1, 17 - len(column))}# the columns it writes; existing ones are snapshotted for the rollback
  # max_attempts: 3           # per batch; then the batch is recorded failed and the others go on
  # sync: {{{column}: {_q(expression)}}}   # a trigger keeps rows the application writes meanwhile right
"""


def _operation(op: str, table: str, table_name: str, key: str, column: str, type_: str,
               to: str | None) -> tuple[str, str, list[str]]:
    """(summary for the description, the `operations:` YAML, placeholders) of one operation."""
    head = "operations:                   # zero-downtime patterns; `airmigrate plan <id> --sql` shows their SQL\n"
    placeholders: list[str] = []
    if op == "add_column":
        summary = f"add column {column} {type_} to {table}"
        lines = [f"column: {column}", f"type: {_q(type_)}",
                 "# default: \"FALSE\"          # constant default for new rows",
                 "# backfill: \"lower(email)\"  # expression over the row: batches fill existing rows, a trigger "
                 "new ones",
                 "# not_null: true            # SET NOT NULL in the contract without a long lock (needs default or "
                 "backfill)"]
    elif op == "rename_column":
        summary = f"rename {table}.{column} to {to}"
        lines = [f"column: {column}", f"to: {to}",
                 "# both names stay in sync (trigger) until the contract drops the old one"]
    elif op == "change_column_type":
        summary = f"change the type of {table}.{column} to {type_}"
        lines = [f"column: {column}", f"type: {_q(type_)}",
                 f"# using: {_yaml_sql(f'{_sql_name(column)}::{type_}')}   # conversion expression over the row "
                 "(default column::type)"]
    elif op == "split_table":
        new_table = f"{table_name}_{column}"[:63]
        placeholders.append(f"new table {new_table}")
        summary = f"move {column} from {table} into {new_table}"
        lines = [f"new_table: {new_table}", f"columns: [{column}]",
                 "# a trigger mirrors writes into the new table until the contract drops the moved columns"]
    elif op == "add_index":
        name = f"idx_{table_name}_{column}"[:63]
        summary = f"index {name} on {table} ({column})"
        lines = [f"name: {name}", f"columns: [{column}]",
                 "# unique: true              # a unique index",
                 f"# where: \"{column} IS NOT NULL\"   # a partial index"]
    elif op == "add_check":
        name = f"chk_{table_name}_{column}"[:63]
        placeholders.append(f"check expression {column} IS NOT NULL")
        summary = f"check {name} on {table}"
        lines = [f"name: {name}", f"expression: \"{column} IS NOT NULL\"   # added NOT VALID, then validated"]
    elif op == "add_foreign_key":
        name = f"fk_{table_name}_{column}"[:63]
        placeholders.append("referenced table parent_table(id)")
        summary = f"foreign key {name} from {table} ({column}) to parent_table"
        lines = [f"name: {name}", f"columns: [{column}]", "references_table: parent_table",
                 "references_columns: [id]",
                 "# on_delete: CASCADE         # NO ACTION (default), RESTRICT, CASCADE, SET NULL, SET DEFAULT"]
    elif op == "add_unique":
        name = f"uq_{table_name}_{column}"[:63]
        summary = f"unique {name} on {table} ({column})"
        lines = [f"name: {name}", f"columns: [{column}]"]
    elif op == "drop_column":
        summary = f"drop {table}.{column}"
        lines = [f"column: {column}",
                 "# dropped only in the contract step, after an approval; its values are kept for the rollback"]
    elif op == "delete_rows":
        condition = f"{_sql_name(key)} < 0"
        placeholders.append(f"condition {condition} (where)")
        summary = f"delete the rows of {table} that match a condition"
        lines = [f"where: {_yaml_sql(condition)}   # the rows to delete: one condition over the row",
                 "archive: table             # keep them in airmigrate.archive_<id>; the rollback puts them back",
                 "keep_archive_days: 7       # the contract drops the archive only after this (run --until expand, "
                 "then `complete`)",
                 "# vacuum_dead_tuples: 100000   # VACUUM the table between batches past this many dead rows"]
    elif op == "create_table":
        summary = f"create table {table}"
        lines = [f"columns: {{{key}: bigint, created_at: timestamptz}}   # column: type, in order",
                 f"# primary_key: [{key}]         # default: the migration's key",
                 "# not_null: [created_at]",
                 "# checks: {chk_created: \"created_at > '2000-01-01'\"}",
                 "# the rollback drops it when empty, else moves it into schema airmigrate (no row lost)"]
    elif op == "rename_table":
        new_name = to or f"{table_name}_new"[:63]
        if to is None:
            placeholders.append(f"new name {new_name} (give --to)")
        summary = f"rename {table} to {new_name}"
        lines = [f"to: {new_name}", "# a view under the old name keeps the running release working until the "
                 "contract drops it"]
    elif op in ("rename_index", "rename_constraint"):
        what = "index" if op == "rename_index" else "constraint"
        name = f"{'idx' if what == 'index' else 'chk'}_{table_name}_{column}"[:63]
        new_name = to or f"{name}_new"[:63]
        placeholders.append(f"{what} {name}")
        if to is None:
            placeholders.append(f"new name {new_name} (give --to)")
        summary = f"rename {what} {name} to {new_name}"
        lines = [f"name: {name}", f"to: {new_name}"]
    elif op == "move_rows":
        condition, destination = f"{_sql_name(key)} < 0", f"{table_name}_archive"[:63]
        placeholders += [f"condition {condition} (where)", f"destination {destination} (to)"]
        summary = f"move the rows of {table} that match a condition into {destination}"
        lines = [f"to: {destination}", f"where: {_yaml_sql(condition)}   # the rows to move: one condition over the row",
                 "create: true               # make the destination LIKE the table (false: it must exist)",
                 "# columns: {id: id, note: \"'moved'\"}   # destination column: expression (needs an existing "
                 "destination)",
                 "keep_archive_days: 7       # the originals are kept this long (run --until expand, then `complete`)"]
    else:  # drop_table
        summary = f"drop table {table}"
        lines = [f"table: {table_name}",
                 "# moved into schema airmigrate in the contract step, after an approval (not dropped)"]
    return summary, head + f"  - op: {op}\n" + "".join(f"    {line}\n" for line in lines), placeholders


def _up_sql(migration_id: str, table: str, column: str, type_: str) -> str:
    return f"""\
-- up.sql: the expand step of {migration_id}, run by the schema_change stage before the backfill while the
-- application keeps running on the old schema. Keep it additive and instant: a nullable column (or one
-- with a constant default), CREATE INDEX CONCURRENTLY, constraints NOT VALID then VALIDATE CONSTRAINT.
-- Drops belong in cleanup.sql, the contract step after validation. `airmigrate lint` flags what would
-- block writes, with the safe recipe.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {type_};
"""


def _backfill_sql(table: str, key: str, column: str, expression: str) -> str:
    return f"""\
-- backfill.sql: one batch, keys %(lo)s..%(hi)s inclusive, run until every batch of {table} is done.
-- Exactly one UPDATE, bounded by the key range, and safe to re-run: the IS DISTINCT FROM guard skips rows
-- that already hold the value, so a retried or resumed batch writes nothing twice. Replace {expression}
-- with the value computed from the row, in both places. the database driver reads every percent sign in this file,
-- comments too: write a literal one as %%.
UPDATE {table}
SET {column} = {expression}
WHERE {key} BETWEEN %(lo)s AND %(hi)s
  AND {column} IS DISTINCT FROM {expression};
"""


def _down_sql_raw(migration_id: str, table: str, column: str) -> str:
    return f"""\
-- down.sql: undoes up.sql. Run by the rollback DAG {migration_id}__rollback
-- (or `airmigrate run {migration_id} --rollback`), in short statements under lock_timeout.
{WHY_DOWN}-- Undo each up.sql change, the last one first. A rollback that drops a column waits for an approval.
ALTER TABLE {table} DROP COLUMN IF EXISTS {column};
"""


def _down_sql_generated(migration_id: str) -> str:
    return f"""\
-- down.sql: run by the rollback DAG {migration_id}__rollback (or `airmigrate run {migration_id} --rollback`).
{WHY_DOWN}-- The operations in migration.yaml generate their own down SQL (`airmigrate plan {migration_id} --sql`
-- shows it); write here only what else the rollback must undo, in short statements (lock_timeout applies).
"""


def _suite_text(suite: dict) -> str:
    lines = [json.dumps(e) for e in suite["expectations"]]
    return ("{\n" + f'  "name": {json.dumps(suite["name"])},\n  "expectations": [\n    '
            + ",\n    ".join(lines) + "\n  ]\n}\n")


def _q(value: str) -> str:
    """A YAML scalar: plain when safe, else double-quoted (JSON strings are YAML)."""
    return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ .,()]*", value) and not value.endswith(" ") \
        else json.dumps(value)


def _sql_name(column: str) -> str:
    """The column as SQL must write it: `Country` unquoted is `country` to PostgreSQL, so it is quoted."""
    return column if re.fullmatch(r"[a-z_][a-z0-9_$]*", column) else '"' + column.replace('"', '""') + '"'


def _yaml_sql(text: str) -> str:
    """An SQL expression as a YAML string: single-quoted when it holds double quotes (no escapes to read)."""
    return "'" + text.replace("'", "''") + "'" if '"' in text else json.dumps(text)


# -- checks ---------------------------------------------------------------------------------------------

def _check_name(option: str, value: str) -> None:
    problem = identifier_problem(value)
    if problem is not None:
        raise AirmigrateError(f"{option} {value!r} {problem}, so it is not a plain PostgreSQL identifier. Fix: "
                              f"{identifier_fix(value)}. Nothing was created")


def _check_table(table: str) -> None:
    parts = table.split(".")
    if len(parts) > 2:
        raise AirmigrateError(f"--table {table!r} has {len(parts)} dot-separated parts: give `table` or "
                              "`schema.table`. Nothing was created")
    for part in parts:
        _check_name("--table", part)


def _check_type(type_: str) -> str:
    try:
        return check_type(type_)
    except ValueError as exc:
        raise AirmigrateError(f"--type {type_!r}: {exc}; give one PostgreSQL type, e.g. text, bigint, "
                              "boolean, numeric(12,2). Nothing was created") from None


# -- writing --------------------------------------------------------------------------------------------

def _write(folder: Path, texts: dict[str, str], suite_path: Path, suite_text: str) -> None:
    """Stage the folder (hidden, so DAG parsing skips it), load it back, then move it and the suite into place;
    on any failure nothing stays behind."""
    made_dirs = [d for d in (folder.parent, suite_path.parent) if not d.exists()]
    for directory in made_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".new_", dir=folder.parent))
    placed: list[Path] = []
    try:
        staged = staging / folder.name
        staged.mkdir()
        for name, text in texts.items():
            (staged / name).write_text(text)
        staged_suite = staging / suite_path.name
        staged_suite.write_text(suite_text)
        try:  # a bug here must not leave a folder that does not load
            load_migration(staged)
            load_suite_file(staged_suite, check_types=False)
        except SpecError as exc:
            raise AirmigrateError(f"airmigrate new made a folder that does not load ({exc}); nothing was "
                                  "created: please report this") from None
        if folder.exists() or suite_path.exists():
            raise AirmigrateError(f"{folder} or {suite_path} appeared meanwhile; nothing was created")
        os.rename(staged, folder)
        placed.append(folder)
        with open(suite_path, "x") as out:
            placed.append(suite_path)
            out.write(suite_text)
    except BaseException:
        for path in placed:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        for directory in made_dirs:  # made by this call and still empty
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
