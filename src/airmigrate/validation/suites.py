"""A suite file read and checked (its shape, and its expectation types against GX's registry), without importing
Great Expectations: spec loading and lint run it for every migration."""

from __future__ import annotations

import json
from pathlib import Path

from airmigrate.errors import SpecError
from airmigrate.validation.registry import check_expectation_types


def load_suite_file(path: Path, check_types: bool = True) -> dict:
    """Read a suite file and check its shape and expectation types, naming the file and the field on error."""
    path = Path(path)
    try:
        suite = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SpecError(path, "expectations", "missing or not a list",
                        'write {"name": "...", "expectations": [{"type": ..., "kwargs": {...}}]}')
    for i, expectation in enumerate(suite["expectations"]):
        if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str):
            raise SpecError(path, f"expectations[{i}].type", "missing",
                            "name the expectation, e.g. expect_column_values_to_not_be_null")
        if not isinstance(expectation.get("kwargs", {}), dict):
            raise SpecError(path, f"expectations[{i}].kwargs", "not an object", 'write "kwargs": {"column": ...}')
    suite.setdefault("name", path.stem)
    if check_types:
        check_expectation_types(path, suite)
    return suite


def check_suite_file(path: Path | str) -> dict:
    """Shape and expectation types of a suite file, without importing Great Expectations; returns the suite."""
    suite = load_suite_file(Path(path))
    check_expectation_types(path, suite)
    return suite
