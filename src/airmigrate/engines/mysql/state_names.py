"""Where airmigrate's state lives on MySQL / MariaDB: one state database per target database.

On PostgreSQL the state tables are in a schema ``airmigrate`` inside the target database, so two databases on one
server (``shop`` and ``shop_staging``) each have their own history, runs, batches, leases and snapshots. MySQL has
no schemas inside a database: the state used to be one database ``airmigrate`` for the whole server, keyed by
migration id only, so ``shop`` and ``shop_staging`` running the same ``0001_x`` shared (and corrupted) one history.

The fix chosen: target database ``shop`` keeps its state in the database ``airmigrate__shop``
(:func:`state_database`). Why a database per target rather than a target-database column in every key: everything
that belongs to a run is separated at once, with no key, index or query to change (history, runs, batches,
cursors, pacing, controls, actions, leases, and the snapshot and archive tables named after a migration id,
which no column could separate); dropping a target database's state is dropping one database; and the
statements stay the ones every engine writes (``airmigrate.runs``): the MySQL connection reads the qualifier
``airmigrate.`` as its target's state database (:func:`in_state_database`, applied by ``connection.Cursor``
outside string literals and comments, so no value the application writes is ever touched). Named locks
(GET_LOCK) are server-wide: the lease's lock name carries the state database too (:func:`lock_prefix`).

Upgrading: a server whose state is still in the old server-wide ``airmigrate`` database has it moved (RENAME
TABLE, atomic, nothing copied) into the state database of the first target database that creates its own state
(:func:`adopt_legacy_state`); the old database keeps a row saying where it went, and any other target database
creating its state afterwards logs a warning naming that place, since the old state could not say which
database each of its rows belonged to.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache

QUALIFIER = "airmigrate"   # what every engine's statements write before a state table's name
PREFIX = "airmigrate__"
MAX_IDENTIFIER = 64        # MySQL's and MariaDB's limit for a database name (characters)


def legacy_database() -> str | None:
    """Where earlier versions kept the whole server's state: AIRMIGRATE_MYSQL_LEGACY_STATE, ``airmigrate`` by
    default; set it empty to leave that database alone (several target databases shared it and you will sort
    its rows out by hand). Read at call time, as :mod:`airmigrate.settings` is."""
    return os.environ.get("AIRMIGRATE_MYSQL_LEGACY_STATE", "airmigrate") or None


def state_database(dbname: str) -> str:
    """``airmigrate__<dbname>``: the name kept as it is when it is letters, digits and underscores and fits in
    64 characters; otherwise those characters (the rest as ``_``), cut to fit, and 8 hex digits of the name's
    SHA-1 (lower-cased, so a server with lower_case_table_names folds both names alike), which keeps two
    different target names apart (``shop-1`` and ``shop_1``)."""
    safe = re.sub(r"[^0-9A-Za-z_]", "_", dbname)
    name = PREFIX + safe
    if safe == dbname and len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(dbname.lower().encode()).hexdigest()[:8]
    return f"{PREFIX}{safe[:MAX_IDENTIFIER - len(PREFIX) - 9]}_{digest}"


def lock_prefix(state_db: str) -> str:
    """What a named lock of this target starts with: GET_LOCK names are server-wide and 64 characters at most,
    so the state database appears as 8 hex digits of its (lower-cased) name."""
    return "airmigrate." + hashlib.sha1(state_db.lower().encode()).hexdigest()[:8]


def quote_identifier(name: str) -> str:
    """`name` in backticks, a backtick inside doubled (MySQL's rule whatever the sql_mode, short of
    ANSI_QUOTES, which changes what double quotes mean and not backticks). Here, below connection.py, so the
    state's names and every other module share the one rule."""
    return "`" + name.replace("`", "``") + "`"


def schema_of(conn, schema: str) -> str:
    """The database a schema name means on this connection: the state's qualifier is its state database."""
    return conn.state_database if schema == QUALIFIER else schema


# The qualifier `airmigrate.` (bare or in backticks), found only where SQL names things: string literals, quoted
# identifiers and comments are matched whole first and given back unchanged. A word ending in ...airmigrate
# or a name qualified by another (x.airmigrate.t) is not the qualifier.
_TOKENS = re.compile(r"""
    '(?:[^'\\]|\\.|'')*'                  # a string literal
  | "(?:[^"\\]|\\.|"")*"                  # a string literal (double quotes)
  | --[ \t][^\n]*|\#[^\n]*|/\*.*?\*/          # comments
  | (?P<state>(?<![\w$.`])(?:airmigrate|`airmigrate`)(?=\s*\.))
  | `(?:[^`]|``)*`                         # another quoted identifier
  | [\w$]+                                 # another word
""", re.S | re.X)


def _replace(match: re.Match, quoted: str) -> str:
    return quoted if match.lastgroup == "state" else match.group(0)


@lru_cache(maxsize=4096)
def in_state_database(text: str, state_db: str) -> str:
    """`text` with each qualifier ``airmigrate.`` naming `state_db` instead (see the module's doc). Statements
    repeat (every batch runs the same few), hence the cache."""
    if "airmigrate" not in text:
        return text
    quoted = quote_identifier(state_db)
    return _TOKENS.sub(lambda m: _replace(m, quoted), text)
