"""A cache of what is costly to work out from a file at every DAG parse (Alembic's offline rendering of a
revision: ~20 ms each, so a project with hundreds of revisions made every parse seconds slower).

One small JSON file per cached file under ``var/cache/sources/`` (named by the file's path, so an edited file
replaces its entry rather than adding one), holding the key it was computed for: the file's mtime, size and
sha256 and whatever else the value depends on. A key that differs in anything is computed again. A cache that
cannot be read or written (a read-only deployment) only costs the computation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

from airmigrate import settings

log = logging.getLogger(__name__)


def folder() -> Path:
    return settings.cache_dir() / "sources"


def _entry(key: dict) -> Path:
    return folder() / (hashlib.sha256(str(key["file"]).encode()).hexdigest()[:24] + ".json")


def cached(key: dict, compute: Callable[[], tuple]) -> tuple:
    """compute()'s value for this key: from the cache when it was computed for the same key, else computed now
    and kept. Values are JSON (here: the revision's up and down SQL, or None)."""
    path = _entry(key)
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return tuple(stored["value"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"key": key, "value": list(value)}, file)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not keep %s in the cache: %s", key.get("file"), exc)
    return value
