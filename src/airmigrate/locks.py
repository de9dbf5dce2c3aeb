"""What a statement locks, in words every engine shares: the relations and the lock mode on each, and whether it
scans or rewrites the table. The engines' lock rules fill these in; the plan renders them."""

from __future__ import annotations

from dataclasses import dataclass

NO_LOCK = "none on existing tables"


@dataclass(frozen=True)
class RelationLock:
    relation: str   # as the statement names it; "" = relations it does not name (e.g. a referenced table)
    mode: str
    what: str = "table"   # "table", "index", "indexes" (of relation), "referenced table", ...

    def __str__(self) -> str:
        where = self.relation or "?"
        if self.what == "indexes":
            return f"{self.mode} on the indexes of {where}"
        return f"{self.mode} on {self.what} {where}" if self.relation else f"{self.mode} on {self.what}"


@dataclass(frozen=True)
class Analysis:
    locks: tuple[RelationLock, ...]   # the statement's own relation first
    effect: str                        # "", "scan" or "rewrite"
    notes: tuple[str, ...] = ()

    @property
    def lock(self) -> str:
        return self.locks[0].mode if self.locks else NO_LOCK

    @property
    def others(self) -> tuple[RelationLock, ...]:
        """Locks besides the headline one: other tables (REFERENCES), indexes, ..."""
        return self.locks[1:]
