"""MySQL's command-line clients (mysqldump, mysql, pt-online-schema-change) and how they get the credentials.

Why an option file and not the environment or argv: a password on a command line is visible to every user of the
machine (``ps``), ``MYSQL_PWD`` is deprecated and visible in ``/proc/<pid>/environ``. Every client here reads
``--defaults-extra-file`` (pt-online-schema-change through its DSN's ``F=``), so the target's credentials go into a
0600 file in a private (0700) temporary folder, removed as soon as the client ends, whatever happens. The
environment handed to the clients has the ``MYSQL_*`` variables removed, so nothing from the worker's own
environment overrides the target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

from airmigrate.engines.target import Target
from airmigrate.errors import AirmigrateError

# (environment variable naming the binary, the names to look for on PATH, the Debian package that has it)
DUMP = ("AIRMIGRATE_MYSQLDUMP", ("mariadb-dump", "mysqldump"), "mariadb-client (or mysql-client)")
CLIENT = ("AIRMIGRATE_MYSQL", ("mariadb", "mysql"), "mariadb-client (or mysql-client)")
PT_OSC = ("AIRMIGRATE_PT_OSC", ("pt-online-schema-change",), "percona-toolkit")


def binary(kind: tuple[str, tuple[str, ...], str]) -> str:
    """The client's path: the environment variable when set, else the first name found on PATH."""
    variable, names, package = kind
    if os.environ.get(variable):
        return os.environ[variable]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise AirmigrateError(f"no {' or '.join(names)} found on this worker: install Debian's {package} "
                          f"(apt-get install -y {package.split(' ')[0]}) or set {variable} to its path")


def _value(text: str) -> str:
    """A value as an option file reads it: in double quotes, backslashes and quotes escaped (a ``#`` or ``;``
    inside quotes is no comment)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def option_text(target: Target) -> str:
    """The [client] group for `target` (read by mysqldump, mysql and DBD::mysql alike)."""
    lines = ["[client]", f"user={_value(target.user)}"]
    if target.password:
        lines.append(f"password={_value(target.password)}")
    if target.host.startswith("/"):
        lines.append(f"socket={_value(target.host)}")
    else:
        lines += [f"host={_value(target.host)}", f"port={int(target.port)}", "protocol=TCP"]
    return "\n".join(lines) + "\n"


@contextmanager
def defaults_file(target: Target) -> Iterator[str]:
    """A 0600 option file with the target's credentials in a fresh 0700 folder; removed with its folder on exit."""
    folder = tempfile.mkdtemp(prefix="airmigrate-mysql-")   # mkdtemp: 0700, only this user
    path = os.path.join(folder, "client.cnf")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(option_text(target))
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def client_environ() -> dict[str, str]:
    """The worker's environment without the variables a MySQL client would read instead of our option file."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "MARIADB_"))}


def scrub(text: str, target: Target) -> str:
    """A client's message with the password taken out (a client never prints it; this makes sure)."""
    return text.replace(target.password, "***") if target.password else text
