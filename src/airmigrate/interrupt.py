"""Ctrl-C and SIGTERM stop a local run at the next batch boundary, and leave it resumable.

`airmigrate run` executes the DAG in its own process (dag.test()). Airflow's task runner would turn a
KeyboardInterrupt into a retry and go on with the next task (and SIGTERM into an on_kill() that a Python
task ignores), so the migration would run to its end, contract included. Instead, the first signal only
raises a flag: the backfill stops claiming batches (a batch is a transaction: nothing is half-done), every
task that has not started yet stops before touching the target, and the CLI prints what was done and how
to resume or roll back, then exits 130. A second signal stops at once: the server rolls back the batch in
hand when the connection goes, and the lease (a session lock) is released with it.
"""

from __future__ import annotations

import os
import signal
import sys

from airmigrate.errors import PreflightError

EXIT_INTERRUPTED = 130  # what a shell reports for a process stopped by SIGINT

_STATE: dict[str, object] = {"signal": None, "installed": False}


class Interrupted(PreflightError):
    """The run was stopped by Ctrl-C / SIGTERM: nothing more is done, the run stays resumable."""


def install() -> None:
    """Catch SIGINT and SIGTERM in this process from now on (the CLI, before it starts Airflow)."""
    _STATE["installed"] = True
    reinstall()


def reinstall() -> None:
    """Put our handlers back: Airflow's task runner sets its own SIGTERM handler for each task it starts."""
    if _STATE["installed"]:
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def _on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if _STATE["signal"] is not None:
        _say(f"\n{name} again: stopping now. The batch in hand is rolled back by the server; the run resumes "
             "where it stopped")
        os._exit(EXIT_INTERRUPTED)
    _STATE["signal"] = name
    _say(f"\n{name}: stopping at the next batch boundary (nothing is left half-done); press Ctrl-C again to "
         "stop at once")


def _say(text: str) -> None:
    """To the terminal itself: during a run stdout and stderr go to the run's log file."""
    try:
        sys.__stderr__.write(text + "\n")
        sys.__stderr__.flush()
    except Exception:  # no terminal (closed stderr): the exit code still says it
        pass


def requested() -> str | None:
    """The signal that asked this process to stop (SIGINT, SIGTERM), or None."""
    return _STATE["signal"]  # type: ignore[return-value]


def check(what: str) -> None:
    """Raise Interrupted when a stop was asked for, before `what` starts."""
    if _STATE["signal"]:
        raise Interrupted(f"{_STATE['signal']}: stopped before {what}")


def reset() -> None:
    """Forget a handled stop (tests, or a CLI that runs several migrations and was told to stop)."""
    _STATE["signal"] = None
