"""Our SQL files' batch placeholders, as every engine's driver reads them (pyformat: ``%(lo)s``, ``%(hi)s``,
``%(lo_0)s``... for a composite key; ``%%`` for a literal percent sign). Neutral: the engines' parsers and the
checks above them share these rules."""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"(?<!')%\(((?:lo|hi)(?:_\d+)?)\)s(?!')")


def bound_placeholders(text: str) -> str:
    """Quote the driver's batch placeholders into string literals (same line) so parsers accept the file; idempotent."""
    return PLACEHOLDER.sub(r"'%(\1)s'", text.replace("%%", "%"))


PERCENT = re.compile(r"%(?:%|\(([^)]*)\)(.)|.|$)", re.S)   # how the drivers read a query (pyformat: %% or %(name)s)
BATCH_NAME = re.compile(r"^(lo|hi)(?:_(\d+))?$")
BOUND_LITERAL = re.compile(r"^%\(((?:lo|hi)(?:_\d+)?)\)s$")   # a placeholder once bound_placeholders quoted it


def batch_names(key_columns: tuple[str, ...] | None) -> set[str] | None:
    """The placeholders the runtime binds (Key.params): lo, hi, or lo_0.., hi_0.. for a composite key;
    None when the key is unknown (a lone .sql file), when any of those forms is accepted."""
    if key_columns is None:
        return None
    if len(key_columns) == 1:
        return {"lo", "hi"}
    return {f"{bound}_{i}" for bound in ("lo", "hi") for i in range(len(key_columns))}
