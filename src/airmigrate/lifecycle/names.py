"""A migration named by a unique prefix of its folder name, like a git commit: `airmigrate run 0010`.

Typing `0010_add_orders_status_and_backfill_it_from_the_legacy_flags` in full is where typos come from; a
prefix that names exactly one folder is as good. An ambiguous one is refused with the candidates, never
guessed."""

from __future__ import annotations

from pathlib import Path

from airmigrate.errors import AirmigrateError


def resolve(name: str, folders: list[str], where: Path | str) -> str:
    """The folder name `name` means: itself when it is one, else the one folder it is a prefix of."""
    if name in folders:
        return name
    matches = [f for f in folders if name and f.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AirmigrateError(f"'{name}' is ambiguous in {where}: it starts {', '.join(matches)}; give more of the "
                              "name")
    raise AirmigrateError(f"no migration '{name}' in {where}: no such migration folder (there are: "
                          f"{', '.join(folders) or 'none'}); give a folder name or a unique prefix of one (e.g. its "
                          "number), or set AIRMIGRATE_MIGRATIONS_DIR")
