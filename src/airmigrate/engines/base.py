"""What a stage needs from a database, and nothing more.

Each engine (a package in ``airmigrate/engines/``) exposes one ``ENGINE`` object implementing :class:`Engine`.
Stages, operations, the plan, lint, the rehearsal and the report call these methods (through ``airmigrate.db``
or ``engines.of(conn)``); none of them asks which engine it has. A capability one engine lacks is a method that
says so, not an ``if engine == ...`` in a stage. Modelled on SQLAlchemy's ``Dialect`` and Alembic's ``DefaultImpl``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airmigrate.engines.operation_sql import OperationSql
from airmigrate.engines.sql import Composable
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


class Engine(OperationSql):
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

    def as_run(self, statements: list[str], conn: Any = None) -> list[str]:
        """The statements as the executor will send them to this connection's server (the plan shows these): the
        same ones, unless the engine renders a form for the server's flavor (MySQL 8 beside MariaDB)."""
        return list(statements)

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
        why not)), STATEMENTS_NAME, ``server_cpus(conn)`` and the sample periods SAMPLE_S and PROBE_SAMPLE_S (the
        engine's: InnoDB's information_schema tables change at most every 0.1 s). Why a module: the pacer runs the
        statements on its own connections several times a second, and the readers keep state between samples
        (MySQL)."""

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
