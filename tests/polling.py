"""Waiting on a condition in tests: poll until it holds, fail naming what was awaited (never a fixed sleep)."""

from __future__ import annotations

import time

import pytest


def wait_for(condition, timeout_s: float = 30.0, what: str = "a condition", interval_s: float = 0.1):
    """Poll until condition() is truthy (returns it), or fail naming what we waited for."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
