"""``executor: pt-osc``: an ALTER the server can only do by copying, run online by pt-online-schema-change.

How it stays online: pt-osc creates an empty shadow table ``_<t>_new`` with the ALTER applied, three triggers on
``<t>`` that mirror every insert, update and delete into it, copies the rows in chunks sized to take
``--chunk-time`` seconds each (pausing while ``--max-load`` is exceeded, aborting above ``--critical-load``), then
swaps the tables with one atomic ``RENAME TABLE`` under a short metadata lock. Why we clean up after it: a pt-osc
that is killed (a worker lost, a task timed out) leaves its triggers on the live table, and every application
write keeps paying for them; a failed run here always ends with no ``pt_osc_*`` trigger and no ``_<t>_new``.

Credentials go through the DSN's ``F=`` option file (:mod:`.clients`), never argv; ``--no-version-check`` keeps it
from calling out to the internet. Its progress lines (``Copying `d`.`t`:  42% 00:12 remain``) go into the task
log as they come.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections import deque

import pymysql

from airmigrate.engines.base import Executor
from airmigrate.engines.mysql import clients, online
from airmigrate.engines.mysql.connection import connect, message, quote_identifier
from airmigrate.engines.mysql.parsing import first_word
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError

log = logging.getLogger(__name__)

PROGRESS = re.compile(r"Copying (?P<table>\S+):\s+(?P<percent>\d+)% (?P<remain>\S+) remain")


def takes(statement: str) -> bool:
    """An ALTER TABLE pt-osc can run (not a table rename, which it cannot do and which never copies)."""
    return first_word(statement) == "ALTER" and online.table_span(statement) is not None \
        and not online.renames_table(statement)


def split(statement: str, default_schema: str) -> tuple[str, str, str]:
    """(schema, table, the ALTER's changes) of an ALTER TABLE: what pt-osc's DSN and ``--alter`` take."""
    start, end, schema, table = online.table_span(statement)
    changes = statement[end:].strip().rstrip(";").strip()
    return _unquoted(schema) if schema else default_schema, _unquoted(table), changes


def _unquoted(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") and name.endswith("`") else name


def command(defaults: str, schema: str, table: str, changes: str, executor: Executor) -> list[str]:
    """pt-online-schema-change's argv (no credential in it: they are in the `defaults` file)."""
    for part in (schema, table):
        if any(c in part for c in ",="):
            raise AirmigrateError(f"pt-online-schema-change cannot name {part!r} in its DSN (a ',' or '=' in it)")
    return [clients.binary(clients.PT_OSC), "--alter", changes, "--execute", "--no-version-check",
            f"--chunk-time={executor.chunk_time:g}", f"--max-load={executor.max_load}",
            f"--critical-load={executor.critical_load}", "--progress=time,1", "--alter-foreign-keys-method=auto",
            "--no-check-replication-filters", f"F={defaults},D={schema},t={table}"]


def run(target: Target, statement: str, executor: Executor) -> dict:
    """Run `statement` through pt-osc; on any failure its triggers and shadow table are removed and
    AirmigrateError says what it printed last. Returns {"seconds", "progress": the last percentage seen}."""
    schema, table, changes = split(statement, target.dbname)
    started, last = time.monotonic(), {"percent": None}
    tail: deque[str] = deque(maxlen=15)
    log.info("pt-online-schema-change on %s.%s: ALTER %s (chunk time %gs, max load %s, critical load %s)", schema,
             table, changes, executor.chunk_time, executor.max_load, executor.critical_load)
    process = None
    try:
        with clients.defaults_file(target) as defaults:
            process = subprocess.Popen(command(defaults, schema, table, changes, executor), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1, env=clients.client_environ())
            for line in process.stdout:
                _log_line(clients.scrub(line.rstrip(), target), last, tail)
            code = process.wait()
        if code != 0:
            raise AirmigrateError(f"pt-online-schema-change on {schema}.{table} failed (exit {code}); it said:\n  "
                                  + "\n  ".join(tail))
    except BaseException:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        removed = clean_up(target, schema, table)
        log.warning("pt-online-schema-change did not finish: removed %s", ", ".join(removed) or "nothing (it had "
                    "cleaned up itself)")
        raise
    seconds = round(time.monotonic() - started, 1)
    log.info("pt-online-schema-change on %s.%s done in %.1fs", schema, table, seconds)
    return {"seconds": seconds, "progress": last["percent"]}


def _log_line(line: str, last: dict, tail: deque) -> None:
    """A progress line as a percentage in the task log; any other line as it is."""
    if not line:
        return
    tail.append(line)
    found = PROGRESS.search(line)
    if found:
        last["percent"] = int(found["percent"])
        log.info("pt-osc progress: %s%% of %s copied, %s remaining", found["percent"], found["table"],
                 found["remain"])
    else:
        log.info("pt-osc: %s", line)


def leftovers(conn, schema: str, table: str) -> tuple[list[str], list[str]]:
    """(pt-osc's triggers on the table, its shadow tables ``_<table>_new``, ``__<table>_new``...)."""
    triggers = [r[0] for r in conn.execute(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s AND "
        "EVENT_OBJECT_TABLE = %s AND TRIGGER_NAME LIKE 'pt\\_osc\\_%%'", (schema, table)).fetchall()]
    shadows = [r[0] for r in conn.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
        (schema, "%\\_" + table.replace("_", "\\_") + "\\_new")).fetchall()
        if re.fullmatch(r"_+" + re.escape(table) + "_new", r[0])]
    return triggers, shadows


def clean_up(target: Target, schema: str, table: str, attempts: int = 10) -> list[str]:
    """Drop what a failed pt-osc left: the triggers first (they write into the shadow table), then the shadow
    table; each under a short metadata-lock wait, retried. Returns what was dropped."""
    dropped: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            with connect(target, autocommit=True, application_name="airmigrate pt-osc cleanup") as conn:
                conn.execute("SET SESSION lock_wait_timeout = 2")
                triggers, shadows = leftovers(conn, schema, table)
                for name in triggers:
                    conn.execute(f"DROP TRIGGER IF EXISTS {quote_identifier(schema)}.{quote_identifier(name)}")
                    dropped.append(f"trigger {name}")
                for name in shadows:
                    conn.execute(f"DROP TABLE IF EXISTS {quote_identifier(schema)}.{quote_identifier(name)}")
                    dropped.append(f"table {name}")
            return dropped
        except pymysql.err.MySQLError as exc:
            log.warning("cleaning up after pt-osc, attempt %d/%d: %s", attempt, attempts, message(exc))
            time.sleep(min(5.0, 0.2 * 2 ** attempt))
    raise AirmigrateError(f"pt-osc's triggers or shadow table on {schema}.{table} could not be removed: drop the "
                          f"pt_osc_* triggers on it and the _{table}_new table by hand")
