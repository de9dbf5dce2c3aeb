"""The expectation types Great Expectations knows, checked when a migration loads (at DAG parse).

Importing great_expectations costs 5-6 s, too slow for the dag-processor. The names come from GX's own
registry (``great_expectations.expectations.registry``) once: read in a subprocess (or in this process
when GX is already imported) and cached as JSON under the cache dir (settings.cache_dir), keyed by the
installed GX version, so an upgrade re-reads the registry and parsing a DAG file only reads a small file.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from airmigrate import settings
from airmigrate.errors import AirmigrateError, SpecError

log = logging.getLogger(__name__)

PROBE = (
    "import json, sys\n"
    "import great_expectations\n"
    "from great_expectations.expectations import registry\n"
    "registry.register_core_expectations()\n"
    "json.dump(sorted(registry.list_registered_expectation_implementations()), sys.stdout)\n"
)
_memo: dict[tuple[str, str], frozenset[str]] = {}


def gx_version() -> str:
    """The installed great_expectations version, from its package metadata (no import)."""
    return metadata.version("great_expectations")


def cache_file(version: str | None = None) -> Path:
    return settings.cache_dir() / f"gx-expectation-types-{version or gx_version()}.json"


def registered_in_process() -> list[str]:
    """GX's registry read in this process (imports great_expectations)."""
    from great_expectations.expectations import registry

    registry.register_core_expectations()
    return sorted(registry.list_registered_expectation_implementations())


def known_expectation_types() -> frozenset[str]:
    """Every expectation type name the installed Great Expectations accepts."""
    version = gx_version()
    path = cache_file(version)
    key = (version, str(path))
    if key not in _memo:
        names = _read_cache(path, version)
        if names is None:
            names = registered_in_process() if "great_expectations" in sys.modules else _registered_in_subprocess()
            _write_cache(path, version, names)
        _memo[key] = frozenset(names)
    return _memo[key]


def check_expectation_types(path: Path | str, suite: dict) -> None:
    """SpecError for the first expectation whose type Great Expectations does not know."""
    known = None
    for i, expectation in enumerate(suite.get("expectations") or []):
        name = expectation.get("type") if isinstance(expectation, dict) else None
        if not isinstance(name, str):
            continue  # the shape check reports it
        known = known if known is not None else known_expectation_types()
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SpecError(path, f"expectations[{i}].type",
                            f"'{name}' is not an expectation type of Great Expectations {gx_version()}",
                            f"{hint}use one of the types listed at https://greatexpectations.io/expectations "
                            "(without it the expectation would silently not run)")


def _read_cache(path: Path, version: str) -> list[str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("great_expectations") != version:
        return None
    names = data.get("expectation_types")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return names


def _write_cache(path: Path, version: str, names: list[str]) -> None:
    """Atomic (temp file + rename), so parallel DAG parsers never read half a file; best effort."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump({"great_expectations": version, "expectation_types": names}, out, indent=0)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; Airflow's processes may run as other users
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot cache Great Expectations' expectation types in %s: %s", path, exc)


def _registered_in_subprocess() -> list[str]:
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        names = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise AirmigrateError(f"cannot read Great Expectations' expectation types: {exc}") from None
    if not isinstance(names, list) or not names:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise AirmigrateError(f"cannot read Great Expectations' expectation types "
                              f"({sys.executable} -c ...: {tail[0]}); is great_expectations installed?")
    return names
