"""Connections to a MySQL or MariaDB target (PyMySQL, pure Python: no client library to build), and how the
neutral SQL pieces reach it.

Why a connection class of our own: stages write ``conn.execute(...)``, ``with conn.transaction():`` and
``with connect(...) as conn:`` (commit on success, rollback on error), and pass :mod:`airmigrate.engines.sql`
pieces and :class:`~airmigrate.engines.sql.Json` parameters; PyMySQL takes strings only. The subclasses below
render the pieces (identifiers in backticks, literals with the connection's own escaping, which follows the
server's NO_BACKSLASH_ESCAPES) and keep ``%(name)s`` placeholders as they are: PyMySQL reads the same pyformat
as the PostgreSQL driver, so the batch contract (``%(lo)s``, ``%(hi)s``) does not change. Credentials never reach a log
line, an error message or a file (see ``Target.describe``).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql import converters

from airmigrate.engines import base, sql
from airmigrate.engines.mysql.state_names import in_state_database, quote_identifier, state_database
from airmigrate.errors import TransientError

DEFAULTS = {"host": "127.0.0.1", "port": 3306, "user": "root", "dbname": "mysql"}

# Server error codes (MySQL's and MariaDB's docs, "Server Error Message Reference")
LOCK_WAIT_TIMEOUT = 1205        # a row lock or a metadata lock (lock_wait_timeout) waited too long
DEADLOCK = 1213
QUERY_INTERRUPTED = 1317        # KILL QUERY (our watchdog on MySQL, where DDL has no statement time limit)
STATEMENT_TIMEOUT_MARIADB = 1969  # max_statement_time exceeded
STATEMENT_TIMEOUT_MYSQL = 3024    # max_execution_time exceeded (SELECT only)
LOCK_NOWAIT = 3572                # MySQL 8: NOWAIT found the row locked
ALTER_NOT_SUPPORTED = (1845, 1846)  # ALGORITHM=... / LOCK=... refused: the server would have to copy or lock
# The connection or the server went away: a retry on a new connection resumes
CONNECTION_LOST = {2002, 2003, 2006, 2013, 2055, 1053, 1927, 4031}
TRANSIENT = {LOCK_WAIT_TIMEOUT, DEADLOCK, LOCK_NOWAIT, *CONNECTION_LOST}


# ---------------------------------------------------------------------------------------------------------------
# rendering

def literal(value: Any, context: Any = None) -> str:
    """A value as a SQL literal: the connection's escaping when there is one (it knows whether the server takes
    backslashes as escapes), else the default escaping (backslashes and quotes escaped)."""
    if isinstance(value, sql.Json):
        value = json.dumps(value.obj)
    escape = getattr(context, "escape", None) or getattr(getattr(context, "connection", None), "escape", None)
    if escape is not None:
        return escape(value)
    if isinstance(value, str):
        return "'" + converters.escape_string(value) + "'"
    return converters.escape_item(value, "utf8mb4")


def render(piece: Any, context: Any = None, params: bool = False) -> str:
    """A neutral piece as MySQL text. With `params` (the statement will be bound with parameters), a ``%`` in an
    identifier or a literal is doubled, so PyMySQL's ``query % args`` leaves it as it was; a ``%`` in an
    ``SQL`` piece is ours to write (``%%``) as with the PostgreSQL driver."""
    if isinstance(piece, str):
        return piece
    if isinstance(piece, sql.SQL):
        return piece.string
    if isinstance(piece, sql.Identifier):
        text = ".".join(quote_identifier(s) for s in piece.strings)
    elif isinstance(piece, sql.Literal):
        text = literal(piece.obj, context)
    elif isinstance(piece, sql.Placeholder):
        return f"%({piece.name})s" if piece.name else "%s"
    elif isinstance(piece, sql.Composed):
        return "".join(render(p, context, params) for p in piece.seq)
    else:
        raise TypeError(f"cannot render {piece!r} as MySQL")
    return text.replace("%", "%%") if params else text


def adapt(params: Any) -> Any:
    """Parameters as PyMySQL takes them: a :class:`sql.Json` becomes its JSON text (MySQL's JSON columns take
    text; MariaDB's JSON is LONGTEXT with a JSON_VALID check)."""
    if params is None:
        return None
    if isinstance(params, sql.Json):
        return json.dumps(params.obj)
    if isinstance(params, dict):
        return {k: adapt(v) if isinstance(v, sql.Json) else v for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return tuple(adapt(v) if isinstance(v, sql.Json) else v for v in params)
    return params


# ---------------------------------------------------------------------------------------------------------------
# connection and cursor

class Cursor(pymysql.cursors.Cursor):
    """PyMySQL's cursor, taking neutral pieces where it takes strings. ``execute`` returns the cursor (as
    the PostgreSQL driver's does) so ``conn.execute(q).fetchone()`` reads the same on both engines; the row count is
    ``rowcount``. The qualifier ``airmigrate.`` names the target's own state database (:mod:`.state_names`)."""

    def execute(self, query, args=None):
        text = render(query, self.connection, params=args is not None)
        super().execute(in_state_database(text, self.connection.state_database), adapt(args))
        return self

    def executemany(self, query, args):
        """One statement per parameter set (PyMySQL's own executemany adds up what ``execute`` returns)."""
        text, total = in_state_database(render(query, self.connection, params=True),
                                        self.connection.state_database), 0
        for one in args:
            total += pymysql.cursors.Cursor.execute(self, text, adapt(one))
        self.rowcount = total
        return self


class _Info:
    """The little of the PostgreSQL driver's ``conn.info`` a stage reads: which session this is, which server."""

    def __init__(self, conn: "Connection"):
        self._conn = conn

    @property
    def backend_pid(self) -> int:
        return self._conn.thread_id()

    @property
    def server_version(self) -> str:
        return self._conn.get_server_info()

    @property
    def host(self) -> str:
        return self._conn.host

    @property
    def port(self) -> int:
        return self._conn.port

    @property
    def dbname(self) -> str:
        """The database named at connect time: the target (its state lives in its own database)."""
        db = self._conn.db
        return db.decode() if isinstance(db, bytes) else str(db or "")


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection with the PostgreSQL driver's habits: ``execute``, ``transaction()``, ``info``, and a ``with``
    block that commits on success and rolls back on an error before closing."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("cursorclass", Cursor)
        # the database named at connect time is the target: its state is in its own database (.state_names)
        self.state_database = state_database(kwargs.get("database") or DEFAULTS["dbname"])
        super().__init__(*args, **kwargs)

    @property
    def info(self) -> _Info:
        return _Info(self)

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.get_server_info().lower()

    def execute(self, query, params=None) -> Cursor:
        cur = self.cursor()
        return cur.execute(query, params)

    @contextmanager
    def transaction(self, force_rollback: bool = False):
        """One transaction: committed when the block ends, rolled back when it raises (or always, with
        `force_rollback`: a probe). In autocommit mode too (``BEGIN`` opens one explicitly), as the PostgreSQL
        driver's ``transaction()`` does. MySQL still commits around DDL: a probe works on temporary tables."""
        self.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.rollback() if force_rollback else self.commit()

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.open:
                self.rollback() if exc_type else self.commit()
        finally:
            if self.open:
                self.close()


def parse_url(url: str) -> dict[str, Any]:
    """host, port, user, password, dbname of a ``mysql://`` or ``mariadb://`` URL (``mysql+pymysql://`` too);
    defaults: root at 127.0.0.1:3306, database ``mysql``. ``?unix_socket=/path/mysqld.sock`` names a socket."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    socket = (query.get("unix_socket") or query.get("host") or [None])[0]   # ?host=/dir: what Target.url writes
    host = socket or unquote(parts.hostname or "") or DEFAULTS["host"]
    return {"host": host, "port": parts.port or DEFAULTS["port"],
            "user": unquote(parts.username or "") or DEFAULTS["user"],
            "password": unquote(parts.password) if parts.password else None,
            "dbname": unquote(parts.path.lstrip("/")) or DEFAULTS["dbname"]}


def conninfo(target) -> str:
    """A SQLAlchemy URL (``mysql+pymysql://``): what Great Expectations and pandas take."""
    return target.url().replace(f"{target.scheme}://", "mysql+pymysql://", 1)


def connect(target, autocommit: bool = False, application_name: str | None = None) -> Connection:
    """A connection to the target (utf8mb4). `application_name` becomes the session's ``program_name``
    connection attribute, which performance_schema.session_connect_attrs shows; the processlist shows the
    user and host only. Transactions are READ COMMITTED, PostgreSQL's default that airmigrate's statements
    are written for: a batch's UPDATE and a claim's SELECT ... FOR UPDATE SKIP LOCKED take no gap locks, which
    under InnoDB's REPEATABLE READ would stop the application's inserts beside the batch's range (and the
    next batch's creation) until the batch commits."""
    where = {"unix_socket": target.host} if target.host.startswith("/") else {"host": target.host,
                                                                               "port": target.port}
    try:
        conn = Connection(user=target.user, password=target.password or "", database=target.dbname,
                          charset="utf8mb4", autocommit=autocommit, connect_timeout=10,
                          program_name=(application_name or "airmigrate")[:64],
                          init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", **where)
        conn.target = target  # where it goes (the replicas' lag is read with the same credentials)
        return conn
    except pymysql.err.OperationalError as exc:
        raise TransientError(f"cannot connect to {target.describe()}: {message(exc)}") from None


def code(exc: BaseException) -> int | None:
    """The server's (or the client's) error number of a PyMySQL error."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def message(exc: BaseException) -> str:
    """The error's text without PyMySQL's tuple around it: ``(1205, 'Lock wait...')`` -> ``1205: Lock wait...``."""
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[0]}: {exc.args[1]}"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def error_kind(exc: BaseException) -> str | None:
    """A PyMySQL error in the engine-neutral words of :mod:`airmigrate.engines.base`, by error number (PyMySQL
    maps lock wait timeouts and lost connections alike to OperationalError)."""
    number = code(exc)
    if number in (STATEMENT_TIMEOUT_MARIADB, STATEMENT_TIMEOUT_MYSQL, QUERY_INTERRUPTED):
        return base.STATEMENT_TIMEOUT
    if number in (LOCK_WAIT_TIMEOUT, LOCK_NOWAIT):
        return base.LOCK_TIMEOUT
    if number in CONNECTION_LOST or isinstance(exc, pymysql.err.InterfaceError):
        return base.CONNECTION
    if isinstance(exc, pymysql.err.MySQLError):
        return base.DATABASE
    return None


def is_transient(exc: BaseException) -> bool:
    """A lock wait timeout, a deadlock, or a lost connection: a retry can help. A statement time limit is not
    (the same statement would hit it again: smaller batches help, which is the caller's decision)."""
    return isinstance(exc, TransientError) or code(exc) in TRANSIENT or isinstance(exc, pymysql.err.InterfaceError)


# table exists, duplicate column, duplicate key name, can't DROP (it does not exist), duplicate foreign key name,
# duplicate check constraint name (MySQL 8 / MariaDB), unknown table on DROP
IN_PLACE_ERRORS = {1050, 1060, 1061, 1091, 1826, 3822, 4028, 1051}


def already_in_place(exc: BaseException) -> bool:
    """The statement's object already exists (or its dropped object is gone), by error number."""
    return code(exc) in IN_PLACE_ERRORS
