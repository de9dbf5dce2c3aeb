"""Backups on MySQL / MariaDB: ``mysqldump --single-transaction`` of one table, and its restore with the client.

Why ``--single-transaction``: InnoDB gives the dump one consistent snapshot without ``LOCK TABLES``, so the
application keeps writing while the table is read (the default ``--lock-tables`` would block its writes for the
whole dump). Why ``--skip-add-locks``: a restore then takes no ``LOCK TABLES ... WRITE`` around its inserts either.
The dump is plain SQL (DROP TABLE IF EXISTS, CREATE TABLE, INSERTs, the table's triggers), written through a
file descriptor opened 0600 by us, never by the client under the worker's umask. Credentials: an option file
(:mod:`.clients`), never argv or the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from airmigrate.engines import sql
from airmigrate.engines.mysql import clients
from airmigrate.engines.mysql.connection import render
from airmigrate.engines.mysql.op_columns import distinct
from airmigrate.engines.mysql.state_names import schema_of
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError

DUMP_OPTIONS = ("--single-transaction", "--skip-lock-tables", "--skip-add-locks", "--triggers", "--hex-blob",
                "--no-tablespaces", "--default-character-set=utf8mb4", "--quick")


def dump_command(defaults: str, schema: str, table: str) -> list[str]:
    """mysqldump's argv: the option file first (the clients read ``--defaults-extra-file`` only there)."""
    return [clients.binary(clients.DUMP), f"--defaults-extra-file={defaults}", *DUMP_OPTIONS, "--", schema, table]


def dump_table(target: Target, schema: str, table: str, path: Path) -> None:
    """`schema`.`table` into `path` (created or truncated, 0600); the file is removed when the dump fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    try:
        with clients.defaults_file(target) as defaults:
            result = subprocess.run(dump_command(defaults, schema, table), stdout=fd, stderr=subprocess.PIPE,
                                    env=clients.client_environ(), text=True, umask=0o077)
    finally:
        os.close(fd)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise AirmigrateError(f"mysqldump of {schema}.{table} failed (exit {result.returncode}): "
                              f"{clients.scrub(result.stderr.strip(), target)[:500]}. Nothing was changed; fix the "
                              "cause and clear the task to retry")


DEFINER = re.compile(rb"/\*!50017 DEFINER=`(?:[^`]|``)*`@`(?:[^`]|``)*`\s*\*/ ?")


def restore_table(target: Target, path: Path, schema: str) -> None:
    """Replace the table with the dump's copy: the dump's own DROP TABLE IF EXISTS, CREATE TABLE, INSERTs and
    triggers, run by the mysql client in `schema` (a failure stops at the failing statement and names it). The
    triggers' DEFINER clauses are left out, so they are created as the restoring user: a user without SUPER /
    SET USER cannot name another one, and the restore must not fail on the last statement of the dump."""
    with clients.defaults_file(target) as defaults, open(path, "rb") as dump:
        process = subprocess.Popen([clients.binary(clients.CLIENT), f"--defaults-extra-file={defaults}",
                                    "--default-character-set=utf8mb4", "--batch", f"--database={schema}"],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env=clients.client_environ())
        try:
            for line in dump:
                process.stdin.write(DEFINER.sub(b"", line) if b"DEFINER=" in line else line)
        except BrokenPipeError:
            pass  # the client stopped at an error: its message says which
        finally:
            process.stdin.close()
        errors = process.stderr.read().decode(errors="replace")
        code = process.wait()
    if code != 0:
        raise AirmigrateError(f"restoring {path.name} into {schema} failed (exit {code}): "
                              f"{clients.scrub(errors.strip(), target)[:500]}")


def relation_bytes(conn, schema: str, table: str) -> int:
    """Data and indexes of a table as InnoDB counts them (information_schema.TABLES); 0 when it does not exist."""
    row = conn.execute("SELECT COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) FROM information_schema.TABLES "
                       "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema_of(conn, schema), table)).fetchone()
    return int(row[0]) if row else 0


def restore_from_snapshot(table: sql.Composable, snapshot: sql.Composable, keys: list[str], columns: list[str],
                          bounds: sql.Composable) -> sql.Composable:
    """A multi-table UPDATE joined to the snapshot, where the value differs byte for byte (op_columns.distinct:
    a case-insensitive collation finds 'ROW 1' equal to 'row 1' and would leave an upper-cased value in place)."""
    return sql.SQL("UPDATE {t} AS t JOIN {s} AS s ON {join} SET {sets} WHERE {bounds} AND ({changed})").format(
        t=table, s=snapshot, bounds=bounds,
        join=sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in keys),
        sets=sql.SQL(", ").join(sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in columns),
        changed=sql.SQL(" OR ").join(
            sql.SQL(distinct("t." + render(sql.Identifier(c)), "s." + render(sql.Identifier(c)))) for c in columns))
