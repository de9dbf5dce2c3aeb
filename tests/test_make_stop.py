"""`make stop`: the embedded PostgreSQL `make demo` leaves running is stopped by one command (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_stop_stops_the_embedded_server_and_says_so_when_there_is_none(tmp_path):
    env = {**os.environ, "AIRMIGRATE_VAR_DIR": str(tmp_path / "var")}
    started = subprocess.run([sys.executable, "-c", "from airmigrate import devdb; devdb.embedded_server()"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    pid_file = tmp_path / "var" / "pgdata" / "postmaster.pid"
    pid = int(pid_file.read_text().split()[0])
    assert pid_file.exists()
    stop = subprocess.run(["make", "-s", "-C", str(ROOT), "stop"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped" in stop.stdout and not pid_file.exists()
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # gone (or a zombie to reap)
    again = subprocess.run(["make", "-s", "-C", str(ROOT), "stop"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "no embedded PostgreSQL running" in again.stdout
