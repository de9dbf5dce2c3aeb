"""Connections to a PostgreSQL target (psycopg 3), and how the neutral SQL pieces reach psycopg.

A connection made here renders :mod:`airmigrate.engines.sql` pieces through ``psycopg.sql`` itself (so quoting,
literals and encodings are psycopg's, unchanged), and stores :class:`airmigrate.engines.sql.Json` parameters as
jsonb. Credentials never reach a log line, an error message or a file (see ``Target.describe``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb, JsonbDumper

from airmigrate.engines import base, sql
from airmigrate.errors import TransientError


def native(piece: Any) -> Any:
    """A neutral piece as the same ``psycopg.sql`` object; anything else (a string, a psycopg piece) as it is."""
    if isinstance(piece, sql.SQL):
        return pgsql.SQL(piece.string)
    if isinstance(piece, sql.Identifier):
        return pgsql.Identifier(*piece.strings)
    if isinstance(piece, sql.Literal):
        return pgsql.Literal(piece.obj)
    if isinstance(piece, sql.Placeholder):
        return pgsql.Placeholder(piece.name)
    if isinstance(piece, sql.Composed):
        return pgsql.Composed([native(p) for p in piece.seq])
    return piece


def render(piece: sql.Composable, context: Any = None) -> str:
    return native(piece).as_string(context)


class Connection(psycopg.Connection):
    """psycopg's connection, of this module: ``airmigrate.engines.of(conn)`` knows its engine by its class."""


class Cursor(psycopg.Cursor):
    """psycopg's cursor, taking neutral pieces where it takes ``psycopg.sql`` ones."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(native(query), params, **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        return super().executemany(native(query), params_seq, **kwargs)

    def copy(self, statement, params=None, **kwargs):
        return super().copy(native(statement), params, **kwargs)

    def stream(self, query, params=None, **kwargs):
        return super().stream(native(query), params, **kwargs)


class ServerCursor(psycopg.ServerCursor):
    def execute(self, query, params=None, **kwargs):
        return super().execute(native(query), params, **kwargs)


class _NeutralJsonDumper(JsonbDumper):
    """sql.Json(value) as jsonb, exactly as psycopg's Jsonb(value)."""

    def dump(self, obj):
        return super().dump(Jsonb(obj.obj))


psycopg.adapters.register_dumper(sql.Json, _NeutralJsonDumper)


def parse_url(url: str) -> dict[str, Any]:
    """host, port, user, password, dbname of a postgresql:// URL or a libpq keyword string."""
    params = conninfo_to_dict(url)
    return {"host": params.get("host") or "127.0.0.1", "port": int(params.get("port") or 5432),
            "user": params.get("user") or "postgres", "password": params.get("password"),
            "dbname": params.get("dbname") or "postgres"}


def conninfo(target) -> str:
    return make_conninfo(host=target.host, port=target.port, user=target.user, dbname=target.dbname,
                         password=target.password or None, application_name="airmigrate")


def connect(target, autocommit: bool = False, application_name: str | None = None) -> psycopg.Connection:
    """A connection to the target; `application_name` names it in pg_stat_activity (at most 63 bytes kept)."""
    extra = {"application_name": application_name[:63]} if application_name else {}
    try:
        conn = Connection.connect(conninfo(target), autocommit=autocommit, connect_timeout=10,
                               cursor_factory=Cursor, **extra)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to {target.describe()}: {first_line(exc)}") from None
    conn.server_cursor_factory = ServerCursor
    return conn


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def error_kind(exc: BaseException) -> str | None:
    """A psycopg error in the engine-neutral words of :mod:`airmigrate.engines.base` (QueryCanceled is tested
    before OperationalError, of which it is a subclass)."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return base.STATEMENT_TIMEOUT
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return base.LOCK_TIMEOUT
    if isinstance(exc, psycopg.OperationalError):
        return base.CONNECTION
    if isinstance(exc, psycopg.Error):
        return base.DATABASE
    return None


# duplicate_column, duplicate_table (an index too), duplicate_object (constraint, trigger), duplicate_schema; and
# for a DROP without IF EXISTS: undefined_column, undefined_object, undefined_table
IN_PLACE_STATES = {"42701", "42P07", "42710", "42P06", "42703", "42704", "42P01"}


def already_in_place(exc: BaseException) -> bool:
    """The statement's object already exists (or its dropped object is gone), by SQLSTATE."""
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) in IN_PLACE_STATES
