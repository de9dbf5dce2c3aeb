"""What a stage needs from a database, and nothing more.

Each engine (a package in ``airmigrate/engines/``) exposes one ``ENGINE`` object implementing :class:`Engine`.
Stages, operations, the plan, lint, the rehearsal and the report call these methods (through ``airmigrate.db``
or ``engines.of(conn)``); none of them asks which engine it has. A capability one engine lacks is a method that
says so, not an ``if engine == ...`` in a stage. Modelled on SQLAlchemy's ``Dialect`` and Alembic's ``DefaultImpl``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airmigrate.engines.sql import Composable, Identifier
from airmigrate.engines.target import Target
from airmigrate.findings import Finding
from airmigrate.locks import Analysis

# What went wrong in the database, as :meth:`Engine.error_kind` names a driver's exception.
STATEMENT_TIMEOUT = "statement_timeout"   # the statement ran longer than statement_timeout: smaller batches help
LOCK_TIMEOUT = "lock_timeout"             # rows or a table held by someone else: later helps
CONNECTION = "connection"                 # the connection or the server went away: a retry resumes
DATABASE = "database"                     # any other error the database reported (constraint, syntax, ...)


# What a migration touches (lifecycle.order): a column an index or constraint of it only reads.
USES = "uses_column"


# -- backups and online schema change (the executor's data; the Engine's methods are in its section of that name)
# How a schema change that the server can only do by copying the table is run (migration.yaml's `executor`).
ONLINE = "online"   # the server's own online DDL only: a change that would copy is refused, quoting the server
PT_OSC = "pt-osc"   # pt-online-schema-change: a shadow copy kept in sync by triggers, swapped in at the end


@dataclass(frozen=True)
class BatchWrite:
    """The pandas path's write-back of a batch (:meth:`Engine.batch_write`). ``run(conn, columns, bounds)``: the
    values given column by column in `names` order (a numpy array, or a list of Python values with None for
    NULL) go into the table's rows of the key range `bounds` (lo, hi), only where they differ, inside the
    caller's transaction; returns the rows changed. ``statements``: (a comment or "", statement) in the order
    ``run`` executes them (PostgreSQL: a temp table, COPY, one UPDATE ... FROM; MySQL: a temporary table,
    multi-row INSERTs, one UPDATE ... JOIN)."""
    statements: list[tuple[str, Composable]]
    run: Callable[[Any, list, dict], int]


@dataclass(frozen=True)
class Executor:
    """What :meth:`Engine.run_group` is told about the migration's executor (plain data: the spec builds it)."""
    name: str = ONLINE
    chunk_time: float = 0.5                      # pt-osc --chunk-time: seconds each copied chunk should take
    max_load: str = "Threads_running=25"         # pt-osc --max-load: pause the copy above this
    critical_load: str = "Threads_running=50"    # pt-osc --critical-load: abort the copy above this


# -- operations: rows (delete_rows, move_rows): the data the Engine's methods of that section take
@dataclass(frozen=True)
class RowsJob:
    """What delete_rows / move_rows ask of an engine (plain data: the operation builds it). Names are SQL pieces,
    `where` and the `into` expressions are already checked by the engine's parser, `in_range` is the batch's
    key-range condition with its placeholders."""
    migration_id: str
    table: Identifier                  # the migration's table, (schema, table)
    key: str                           # its key column (one)
    where: str                         # the rows
    in_range: str                      # `key BETWEEN %(lo)s AND %(hi)s`, rendered
    archive: Identifier                # airmigrate.archive_<migration>
    helper: str                        # a per-migration name for the engine's helpers (triggers, procedures)
    columns: tuple[str, ...] | None    # the columns a re-insert writes (not generated); None: no target (plan)
    keep_archive_days: int = 7
    destination: Identifier | None = None   # move_rows' `to`; None for delete_rows
    into: tuple[tuple[str, str], ...] = ()  # move_rows' `columns`: (destination column, expression)
    create: bool = False                    # move_rows created the destination


class Engine(ABC):
    name: str  # as registered in airmigrate.engines

    # -- targets and connections -------------------------------------------------------------------------------
    @abstractmethod
    def parse_url(self, url: str) -> dict[str, Any]:
        """host, port, user, password, dbname of a URL of this engine."""

    @abstractmethod
    def default_target(self) -> dict[str, Any]:
        """host, port, user, dbname when a URL or connection leaves them out."""

    @abstractmethod
    def conninfo(self, target: Target) -> str:
        """The driver's connection string."""

    @abstractmethod
    def client_env(self, target: Target) -> dict[str, str]:
        """Environment for the engine's command-line clients (backups): the password goes here, never on argv."""

    @abstractmethod
    def connect(self, target: Target, autocommit: bool = False, application_name: str | None = None) -> Any:
        """A DB-API connection that takes :mod:`airmigrate.engines.sql` pieces wherever it takes a query."""

    @abstractmethod
    def sqlalchemy_url(self, url: str) -> str:
        """A target URL of this engine in SQLAlchemy's form, naming the driver (Airflow's metadata, GX)."""

    @abstractmethod
    def render(self, piece: Composable, context: Any = None) -> str:
        """A neutral SQL piece as this engine's text (identifiers quoted, literals escaped)."""

    @abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Could a retry help (lock timeout, serialization failure, restart, lost connection)?"""

    @abstractmethod
    def error_kind(self, exc: BaseException) -> str | None:
        """STATEMENT_TIMEOUT, LOCK_TIMEOUT, CONNECTION or DATABASE for the driver's errors; None for any other."""

    # -- SQL text ----------------------------------------------------------------------------------------------
    @abstractmethod
    def split_statements(self, text: str) -> list[str]:
        """A SQL file as its statements, split by the engine's own parser."""

    @abstractmethod
    def group_statements(self, statements: list[str]) -> list[tuple[bool, list[str]]]:
        """(autocommit?, statements) groups: what may share a transaction, what must run alone."""

    @abstractmethod
    def needs_autocommit(self, statement: str) -> bool:
        """Does the engine refuse this statement inside a transaction block?"""

    # -- DDL ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def run_ddl(self, target: Target, sql_text: str, **options: Any) -> list[str]:
        """Run a SQL file safely: every statement under a lock timeout, retried with backoff, blockers named."""

    @abstractmethod
    def run_group(self, target: Target, group: list[str], autocommit: bool, **options: Any) -> None:
        """One group of :meth:`group_statements` under the same rules as :meth:`run_ddl`."""

    @abstractmethod
    def set_timeouts(self, cur: Any, lock_timeout_ms: int, statement_timeout_ms: int, local: bool) -> None:
        """Lock and statement timeouts for the session (or, `local`, the transaction)."""

    # -- the catalog -------------------------------------------------------------------------------------------
    @abstractmethod
    def estimate_rows(self, conn: Any, schema: str, table: str) -> int:
        """The planner's row count, never a count(*)."""

    # -- what the user wrote, read by the engine's parser ------------------------------------------------------
    @abstractmethod
    def syntax_error(self, text: str) -> tuple[int, str] | None:
        """(line, message) of the first syntax error, or None."""

    @abstractmethod
    def one_select(self, text: str) -> str:
        """Exactly one SELECT, re-rendered; ValueError saying why not."""

    @abstractmethod
    def check_type(self, text: str) -> str:
        """Exactly one type name, re-rendered; ValueError saying why not."""

    @abstractmethod
    def check_expression(self, text: str) -> str:
        """Exactly one expression over a row's columns, re-rendered; ValueError saying why not."""

    @abstractmethod
    def on_record(self, expression: str, record: str) -> str:
        """The expression with its bare columns read from `record` (a trigger's row)."""

    @abstractmethod
    def mirror_index(self, definition: str, old: str, new: str, name: str,
                     relation: tuple[str, str] | None = None) -> str:
        """An index definition (as the catalog prints it) on column `new` instead of `old`, built online."""

    @abstractmethod
    def constraint_not_valid(self, add_constraint: str, old: str, new: str) -> str:
        """An ADD CONSTRAINT with column `old` read as `new`, added without checking existing rows."""

    @abstractmethod
    def foreign_key_not_valid(self, add_constraint: str, referenced_old: str, referenced_new: str) -> str:
        """A foreign key re-pointed at a replacement column, added without checking existing rows."""

    @abstractmethod
    def index_on(self, definition: str, name: str, table: str) -> str:
        """An index definition renamed and built on another table of the same shape (a probe)."""

    @abstractmethod
    def drops_anything(self, text: str) -> bool:
        """Does this SQL drop a table or view, truncate one, or drop a column?"""

    @abstractmethod
    def data_losing_statements(self, text: str) -> list[str]:
        """What in this SQL drops or rewrites data a column snapshot cannot bring back, in words."""

    @abstractmethod
    def reference_problems(self, conn: Any, migration: Any, resumed: bool) -> list:
        """What the migration names that the target lacks (or already has), replayed in run order."""

    @abstractmethod
    def sql_touched(self, text: str, schema: str, table: str | None) -> set[tuple[str, str]]:
        """What the SQL changes, as (kind, name): ("table", "s.t"), ("column", "s.t.c"), ("index", "s.i"),
        ("constraint", "s.t.c"), (USES, "s.t.c") for a column an index or constraint only reads."""

    @abstractmethod
    def columns_read(self, expression: str) -> list[str]:
        """The columns an expression reads, in order of first mention."""

    # -- table upkeep and rows of other tables (bulk deletes) -------------------------------------------------
    @abstractmethod
    def dead_tuples(self, conn: Any, schema: str, table: str) -> int:
        """How many dead row versions the table holds (the statistics system's count)."""

    @abstractmethod
    def vacuum(self, conn: Any, schema: str, table: str, lock_timeout_ms: int) -> bool:
        """Reclaim the table's dead rows without blocking the application (never a rewrite), from an
        autocommit connection; False when another vacuum holds the table."""

    @abstractmethod
    def estimate_matching(self, conn: Any, schema: str, table: str, where: str) -> tuple[int, int]:
        """(the planner's estimate of the rows `where` matches, the mean row size in bytes); nothing runs."""

    @abstractmethod
    def referencing_keys(self, conn: Any, schema: str, table: str) -> list[dict]:
        """Other tables' foreign keys to this one: name, schema, table, columns, referenced, on_delete."""

    # -- the pandas path's write (one method, each engine its own way) -------------------------------------------
    @abstractmethod
    def batch_write(self, table: tuple[str, str], names: list[str]) -> "BatchWrite":
        """How the pandas path writes a batch's computed values into `table`: `names[0]` is the key, the others
        the columns written. Its ``run`` writes one batch (see :class:`BatchWrite`); its ``statements`` are what
        ``run`` executes, for ``airmigrate plan --sql``. Composed once per shard, run for every batch."""

    # -- lint and locks ------------------------------------------------------------------------------------------
    @abstractmethod
    def lint_sql(self, path: Path, text: str, role: str, version: str, key_columns: tuple[str, ...] | None,
                 generated: bool) -> list[Finding]:
        """The engine's findings on one SQL file (`role`: up, down, backfill or cleanup)."""

    lock_modes: list[str]      # table lock modes, weakest first
    write_blocking: set[str]   # the modes that stop the application's writes

    @abstractmethod
    def analyze(self, statement: str, conn: Any = None) -> Analysis:
        """The locks a statement takes and whether it scans or rewrites (with `conn`: the catalog's answers)."""

    @abstractmethod
    def not_null_proofs(self) -> Any:
        """A fresh tracker with ``skips_scan(statement) -> bool``: which SET NOT NULL an earlier proof makes free."""

    # -- validation ---------------------------------------------------------------------------------------------
    gx_source: str  # the Great Expectations 1.x data source kind for this engine (context.data_sources.add_<it>)

    @abstractmethod
    def default_schema(self, target: Target) -> str:
        """Where a bare table name lives: PostgreSQL's search path default, MySQL's database."""

    @abstractmethod
    def table_columns(self, conn: Any, schema: str, table: str) -> list[str] | None:
        """The table's columns in order (exact names); None when there is no such table."""

    # -- backups and online schema change ------------------------------------------------------------------------
    dump_suffix: str           # the file name ending of a dump of this engine (".dump": pg_dump -Fc; ".sql")
    executors: tuple[str, ...]  # the `executor` values this engine runs: ONLINE always, PT_OSC where it has it
    executor_rules: tuple[str, ...] = ()  # lint rules (a table copy) that an executor other than ONLINE answers

    @abstractmethod
    def dump_table(self, target: Target, schema: str, table: str, path: Path) -> None:
        """A consistent dump of one table into `path` (0600), taken without blocking the application's writes;
        the file is removed and AirmigrateError raised (the client's message, no credentials) when it fails."""

    @abstractmethod
    def restore_table(self, target: Target, path: Path, schema: str) -> None:
        """Replace the table with its copy in a dump :meth:`dump_table` wrote (into `schema`)."""

    @abstractmethod
    def dump_binary(self) -> str:
        """The path of the engine's dump client (pg_dump, mysqldump / mariadb-dump)."""

    @abstractmethod
    def relation_bytes(self, conn: Any, schema: str, table: str) -> int:
        """A table's size on disk with its indexes, in bytes; 0 when it does not exist."""

    @abstractmethod
    def online_problems(self, conn: Any, statements: list[str], executor: str) -> list[str]:
        """What in `statements` the server could do only by copying the table with writes blocked, and
        `executor` does not take over: one line each quoting the server's refusal and naming the fix (empty when
        everything runs online). Asks the server where it can answer for free; changes nothing."""

    # -- state tables and claims -------------------------------------------------------------------------------
    # airmigrate's own tables in the target (airmigrate.state), the one-runner lease (airmigrate.lease) and the
    # backfill's claims. What differs between engines is a named statement of the engine's ``state_sql`` module
    # (the same names in every engine) or one of the methods below; the neutral statements stay in state.py.
    @abstractmethod
    def state_sql(self) -> Any:
        """The engine's ``state_sql`` module: the statements, templates and small functions that differ (a test
        checks that every engine's module defines the same names)."""

    @abstractmethod
    def create_state_tables(self, conn: Any) -> None:
        """Create the state tables when missing, once even when shards race (each engine's own lock)."""

    @abstractmethod
    def xact_lock(self, conn: Any, key: tuple[int, int]) -> None:
        """A lock on `key` held until the current transaction ends (begin_run's check-then-claim)."""

    @abstractmethod
    def lease_try(self, conn: Any, key: tuple[int, int], exclusive: bool, label: str) -> bool:
        """Take the migration's lease on this session without waiting: exclusive (a CLI run) or shared (an
        Airflow task; any number at once, never beside an exclusive holder). Released when the session ends
        (a kill -9 included). False when someone else is in the way. `label` names this holder to others."""

    @abstractmethod
    def lease_release(self, conn: Any, key: tuple[int, int]) -> None:
        """Give back the exclusive lease this session holds (the shared one goes with the session)."""

    @abstractmethod
    def lease_sessions(self, conn: Any, key: tuple[int, int], exclude: set[int]) -> list[tuple]:
        """The other sessions holding the lease (not those in `exclude`, this process's own), each as (label,
        client address or None, session id, mode, connected at)."""

    # -- pacing signals (airmigrate.pacing: the application's latency, our sessions, the run's shared budget) ----
    @abstractmethod
    def paces_by_latency(self) -> bool:
        """Can airmigrate.pacing measure the application's latency on this engine? When not, a throttled run
        goes at full speed with its health checks (the hard stops) only."""

    @abstractmethod
    def pacing_sql(self) -> Any:
        """The engine's ``pacing_sql`` module, the same names in every engine (a test checks): the statements on
        airmigrate.pacing (START_RUN, TRY_LEAD, SHARED_BUDGET, START_PROBE, SET_BUDGET, ROWS_LAST_SECOND,
        OUR_ACTIVE_SESSIONS), ``mark_own_session(conn, label)`` (the pacer's signals never count that session as
        the application), ``activity(conn)`` (a reader whose ``read()`` gives the sessions running, the
        application's sessions waiting on a lock of ours, the ages in ms of its transactions in flight),
        ``statements(conn)`` ((a function giving the application's statements' total ms and calls, None) or (None,
        why not)), STATEMENTS_NAME and ``server_cpus(conn)``. Why a module: the pacer runs the statements on its
        own connections ten times a second, and the readers keep state between samples (MySQL)."""

    @abstractmethod
    def replication_lag_s(self, conn: Any, replicas: tuple[str, ...]) -> float | None:
        """The largest lag (s) of the replicas named in the throttle (host:port, reached with `conn`'s
        credentials), asked on each replica where the primary does not know it (MySQL: SHOW REPLICA STATUS);
        inf when one's replication is stopped. None: this engine reads the lag on the primary (a health query)."""

    # -- a DDL step a crash interrupted ----------------------------------------------------------------------------
    def already_in_place(self, exc: BaseException) -> bool:
        """Does `exc` say that what the statement does is already done: the object it creates exists, the one it
        drops is gone? Asked only of a step an earlier attempt started and never recorded (a crash between the
        server's commit and ours): its change is then in place, not half-applied."""
        return False

    # -- operations -----------------------------------------------------------------------------------------------
    def operation_refusal(self, op: str) -> tuple[str, str] | None:
        """(why, fix) when the operation `op` (migration.yaml's `op:`) cannot run on this engine: the spec refuses it
        at load, naming the field, before anything runs. None: the engine runs it."""
        return None

    # -- operations: rows (delete_rows, move_rows) ----------------------------------------------------------------
    # Each returns the statements of one phase of the operation for this engine (the operation module assembles
    # them into its Steps); `job` says what to move where (RowsJob: plain data). Batch statements carry
    # %(lo)s / %(hi)s and run in the transaction that marks the batch done; their row counts add up to the rows
    # deleted or moved (the batch's `rows`).
    @abstractmethod
    def rows_expand(self, job: RowsJob) -> list[str]:
        """Create the archive (keyed like the table, no other index), the destination when `create`, and whatever
        the engine's batches need (MySQL: the trigger that archives what a batch deletes)."""

    @abstractmethod
    def rows_batch(self, job: RowsJob) -> list[str]:
        """Per batch: delete the rows of the key range matching `where`, keeping each in the archive (and, for
        move_rows, inserting it into the destination), all in the batch's transaction."""

    @abstractmethod
    def rows_contract(self, job: RowsJob) -> list[str]:
        """Drop the archive (and the engine's helpers), refusing with an error that says `keep_archive_days`
        while its last batch is younger than that: nothing dropped then."""

    @abstractmethod
    def rows_down(self, job: RowsJob) -> list[str]:
        """The rollback's short DDL before its batches (MySQL: the up trigger goes, move_rows' way back comes)."""

    @abstractmethod
    def rows_down_batch(self, job: RowsJob) -> list[str]:
        """Per batch of the archive's keys: put the rows back (delete_rows: without overwriting a key taken
        meanwhile; move_rows: out of the destination, or from the archive when `columns` computed them)."""

    @abstractmethod
    def rows_down_contract(self, job: RowsJob) -> list[str]:
        """The rollback's end: drop the archive when every row in it is back (else keep it, warning), and a
        destination the migration created when it is empty."""

    # -- operations: indexes, constraints, tables ----------------------------------------------------------------
    # The statements of add_index, add_unique, add_check, add_foreign_key, drop_table, rename_table, rename_index,
    # rename_constraint and create_table's rollback, for one phase each (the operation modules compose them into
    # Steps): how each stays online differs by engine (PostgreSQL: CONCURRENTLY, NOT VALID + VALIDATE, DO blocks;
    # MySQL: the server's online ALTER, RENAME TABLE, an orphan scan).
    def partial_index_refusal(self) -> tuple[str, str] | None:
        """(why, fix) when the engine has no partial indexes (add_index's `where`); None when it has."""
        return None

    @abstractmethod
    def create_index_sql(self, schema: str, table: str, name: str, columns: list[str], unique: bool = False,
                         where: str | None = None) -> str:
        """Build an index without blocking writes; nothing when it exists (a retry)."""

    @abstractmethod
    def drop_index_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the table's index `name` without blocking writes, when it exists."""

    @abstractmethod
    def add_unique_sql(self, schema: str, table: str, name: str, columns: list[str]) -> list[str]:
        """A unique constraint named `name` on `columns`, its index built online."""

    @abstractmethod
    def drop_unique_sql(self, schema: str, table: str, name: str) -> list[str]:
        """add_unique's undoing, each step nothing when already done."""

    @abstractmethod
    def add_check_sql(self, schema: str, table: str, name: str, expression: str) -> list[str]:
        """A CHECK constraint, existing rows checked without blocking writes (or by the executor the server needs)."""

    @abstractmethod
    def drop_check_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the CHECK constraint `name` when it exists."""

    @abstractmethod
    def add_foreign_key_sql(self, schema: str, table: str, name: str, columns: list[str], references: tuple[str, ...],
                            references_columns: list[str], on_delete: str, key: str, key_type: str) -> list[str]:
        """A foreign key enforced for every write from its first statement on, existing rows proven afterwards
        without blocking writes (`key`, of type `key_type`: the column a batched proof walks)."""

    @abstractmethod
    def drop_foreign_key_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the foreign key `name` when it exists."""

    @abstractmethod
    def rename_index_sql(self, schema: str, table: str, old: str, new: str) -> str:
        """Rename the index `old` (of `table`, in `schema`) when it exists."""

    @abstractmethod
    def rename_constraint_sql(self, schema: str, table: str, old: str, new: str) -> str:
        """Rename the table's constraint `old` when it exists."""

    @abstractmethod
    def rename_table_sql(self, schema: str, table: str, to: str) -> dict[str, list[str]]:
        """rename_table's phases (expand, contract, down, down_contract): both names work for the application
        from the expand until the contract (and back, from the down until the down_contract)."""

    @abstractmethod
    def retire_table_sql(self, schema: str, table: str, retired: str) -> dict[str, list[str]]:
        """drop_table's phases (contract, down): the table moved into airmigrate's schema as `retired`, not
        dropped, and moved back by the rollback."""

    @abstractmethod
    def drop_created_table_sql(self, schema: str, table: str, retired: str) -> str:
        """create_table's rollback: drop the table when empty, else retire it as `retired` (no row lost)."""

    # -- operations: columns (triggers, column DDL) ---------------------------------------------------------------
    # What add_column, rename_column, change_column_type and drop_column (airmigrate.operations) write differently
    # per engine. A row trigger `name` on `table` (schema, table) is whatever the engine needs (PostgreSQL: a
    # function and a trigger; MySQL: one trigger per event); its expressions are already read from the row.
    @abstractmethod
    def computed_column_trigger(self, name: str, table: tuple[str, str], column: str, expression: str) -> list[str]:
        """(Re)create the row trigger that sets `column` to `expression` on every insert and update."""

    @abstractmethod
    def two_way_sync_trigger(self, name: str, table: tuple[str, str], old: str, new: str) -> list[str]:
        """(Re)create the row trigger keeping two columns equal: on insert the missing one filled from the other,
        on update the changed one copied to the other."""

    @abstractmethod
    def cast_back_trigger(self, name: str, table: tuple[str, str], source: str, target: str, type_: str) -> list[str]:
        """(Re)create the row trigger copying a value the application writes now into `source` (an insert, a
        changed value) to `target`, converted to `type_`."""

    @abstractmethod
    def drop_row_trigger(self, name: str, table: tuple[str, str]) -> list[str]:
        """Drop the row trigger `name` (and what it runs) when it exists."""

    @abstractmethod
    def distinct(self, a: str, b: str) -> str:
        """The NULL-safe "a differs from b" (IS DISTINCT FROM)."""

    @abstractmethod
    def cast(self, expression: str, type_: str) -> str:
        """`expression` converted to `type_` where it is assigned to a column of that type."""

    @abstractmethod
    def set_not_null(self, table: tuple[str, str], column: str, type_: str, default: str | None) -> list[str]:
        """Make a column NOT NULL without blocking writes (`type_` and `default`: its definition, for an engine
        that restates it)."""

    @abstractmethod
    def update_joined(self, table: tuple[str, str], source: Composable, keys: list[str], sets: list[tuple[str, str]],
                      where: str, alias: str = "s") -> str:
        """An UPDATE of `table` (alias t) from `source` (alias `alias`) joined on `keys`: SET each (column, value)
        where `where` (over t and the source) holds."""

    @abstractmethod
    def swap_columns(self, table: tuple[str, str], trigger: str, old: str, new: str, retired: str) -> list[str]:
        """Drop the row trigger `trigger` keeping `new` in sync with `old`, and give `old` the name `retired` and `new`
        the name `old`, with nothing the application writes falling between (PostgreSQL: one transaction; MySQL:
        under LOCK TABLES, for milliseconds)."""

    @abstractmethod
    def restore_dropped_column(self, table: tuple[str, str], column: str, type_: str, structure: dict | None
                               ) -> tuple[list[str], list[str]]:
        """(down, down_contract) bringing back a dropped column empty, for the snapshot's values to fill in between:
        as much of its definition (`structure`: the table before, airmigrate.structure.read_table) as the engine
        can give it without blocking writes."""

    def carry_column_sql(self, structure: dict | None, column: str, onto: str, final: str, new_type: str | None = None
                         ) -> tuple[list[str], list[str], list[str]] | None:
        """(build, release, finish): everything `column` has (indexes, NOT NULL, default, comment) rebuilt on its
        replacement `onto` of the same table (of type `new_type`, when it changes), called `final` once the old one
        is dropped (see
        airmigrate.operations.carry). None: the engine uses airmigrate.operations.carry's statements."""
        return None

    def type_change_probe(self, structure: dict | None, column: str, new_type: str) -> list[str] | None:
        """Statements that fail, on an empty temporary copy of the table, exactly when what `column` has (default,
        indexes) cannot apply to `new_type`; None: airmigrate.operations.carry.probe's (PostgreSQL's)."""
        return None

    def replacement_refusals(self, structure: dict | None, column: str) -> list[str]:
        """What this engine's carry (:meth:`carry_column_sql`) cannot take over from `column` to a replacement,
        each with its fix (preflight refuses); empty: everything, or airmigrate.operations.carry judges."""
        return []

    @abstractmethod
    def fill_back_from_snapshot(self, table: tuple[str, str], key: str, back: str, column: str, original: str,
                                snapshot: tuple[str, str]) -> str:
        """change_column_type's rollback batch: `back` (NULL: not written by the application meanwhile) set to the
        snapshot's original value of `column`, or `column` converted to `original` for a row newer than the
        snapshot; the key range as %(lo)s / %(hi)s. Never a locking read of the table beside the rows it writes
        (MySQL: a read of them would take shared locks the application's writes deadlock with)."""

    @abstractmethod
    def placed_after(self, column: str) -> str:
        """The clause putting an added column right after `column` (MySQL's ` AFTER c`, so a replacement takes the
        original's place once it is dropped); empty where the engine cannot place columns."""

    @abstractmethod
    def drop_or_rename_back(self, table: tuple[str, str], old: str, new: str, live_columns: frozenset[str] | None
                            ) -> list[str]:
        """rename_column's way back: while `old` is there (before the contract) drop the copy `new`, else rename
        `new` back to `old`; decided from `live_columns` (the table when the rollback started) or by the server."""

    # -- the demo database (`make demo`, devdb) -------------------------------------------------------------------
    @abstractmethod
    def recreate_database(self, admin: Target, name: str, template: str | None = None) -> Target:
        """Drop the database `name` (even while sessions use it, where the engine can) and create it again, on the
        admin target's server; a Target for it. `template`: PostgreSQL only."""

    @abstractmethod
    def drop_database(self, admin: Target, name: str) -> None:
        """Drop the database `name` when it exists."""

    @abstractmethod
    def forget_state(self, conn: Any, migration_ids: tuple[str, ...]) -> None:
        """Forget airmigrate's state of earlier runs for a fresh demo: where it lives in the database, all of it;
        where it is server-wide (MySQL), these migrations' only. Commits."""

    @abstractmethod
    def seed_users(self, conn: Any, rows: int) -> None:
        """Replace the demo's users table with `rows` realistic rows generated by the server, statistics
        refreshed. Commits."""

    @abstractmethod
    def key_check(self, conn: Any, schema: str, table: str, key: tuple[str, ...]) -> dict | None:
        """The preflight's look at the migration's table: None when it does not exist, else {estimate: the
        catalog's row estimate (0: unknown), columns: in order, unique: `key` is exactly a unique key's columns,
        all NOT NULL, candidates: the table's unique NOT NULL keys, primary first (when `key` is not one)}."""

    @abstractmethod
    def column_types(self, conn: Any, schema: str, table: str) -> dict[str, str]:
        """name -> the type as the engine spells it, of the table's live columns (empty: no such table)."""

    @abstractmethod
    def read_table_structure(self, conn: Any, schema: str, table: str) -> dict | None:
        """airmigrate.structure.read_table's answer from the engine's catalog: columns, constraints, indexes,
        triggers, grants, referencing keys, each with the columns it uses; None when there is no such table."""

    @abstractmethod
    def foreign_keys(self, conn: Any, schema: str, table: str) -> list[dict]:
        """The foreign keys from and to the table, each {name, from_table, from_columns, to_table, to_columns}
        (tables as schema.table): the report's diagram."""

    # -- the rollback's snapshot restore (issue 22: rollback on MySQL as on PostgreSQL) -------------------------
    @abstractmethod
    def restore_from_snapshot(self, table: Composable, snapshot: Composable, keys: list[str], columns: list[str],
                              bounds: Composable) -> Composable:
        """The rollback's per-batch statement: `columns` of `table` (alias t) set back to the backup stage's
        snapshot's (alias s, joined on `keys`) in the batch's `bounds`, only where they differ, NULL-safe and
        byte for byte (a case-insensitive collation must not hide an upper-cased value)."""

    @abstractmethod
    def column_comments(self, conn: Any, schema: str, table: str) -> dict[str, str | None]:
        """name -> comment (None when it has none) of the table's live columns."""

    @abstractmethod
    def comment_column_sql(self, conn: Any, schema: str, table: str, column: str, text: str) -> str:
        """The statement that sets a column's comment (COMMENT ON COLUMN; MySQL: ALTER TABLE ... MODIFY COLUMN)."""

    # -- console, report, lifecycle queries ---------------------------------------------------------------------
    @abstractmethod
    def console_sql(self) -> Any:
        """The engine's ``console_sql`` module: what the console, the report, the plan and the lifecycle commands
        read and write beyond the state statements (time arithmetic, the catalog's state tables, the baseline's
        upsert, a script's session settings, the pandas write as the plan shows it). A test checks that every
        engine's module defines the same names."""

    def command_refusal(self, command: str) -> tuple[str, str] | None:
        """(why, fix) when the CLI command `command` (``rehearse``, ``import``, ``docs``) cannot run on this
        engine: the command refuses before it connects or changes anything. None: it runs."""
        return None
