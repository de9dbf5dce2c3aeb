"""Key ranges by walking the key's index: even batches on sparse keys, no count(*), any key type.

A key is one column (integer, bigint, uuid, text, ...) or several (composite, compared as a row,
lexicographically, which a btree index on those columns serves). Key values travel as text and the
database casts them back to the column type; a composite position is stored as a JSON array. The few
words that differ between engines (the cast to text, OFFSET before or after LIMIT, a row BETWEEN) are
templates of the engine's ``state_sql``.

Walking costs the server a read of every key of the range (its index entries and, where the visibility map is
not set, their rows) before the batch reads them again: an eighth of a full-speed batch's CPU. So on a single
integer key the walk watches for density: once a walked range held exactly its size in consecutive keys, the
next ranges are computed without a statement, ``after + 1`` to ``after + size`` (capped at the table's last key
as that walk read it, an index endpoint), and every ``WALK_EVERY``-th range is walked again to check. Any range
is correct (the next starts past it, and every key between the two is in it); density only decides how many rows
a range holds, and a sparse stretch ends the shortcut at the next walk. Keys the application adds past that last
key are found by the walk that follows it (the walk ends only when it finds no key past the cursor).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from airmigrate import engines
from airmigrate.engines import sql

WALK_EVERY = 8  # on a dense integer key, one range in this many is walked to see that it is still dense
INTEGER_TYPE = re.compile(r"^(tiny|small|medium|big)?int(eger)?\b|^(small|big)?serial\b|^int[248]\b", re.I)


@dataclass(frozen=True)
class Key:
    schema: str
    table: str
    columns: tuple[str, ...]
    # what this process learned of the key: whether it is an integer column, how many ranges to compute before the
    # next walk (0: walk). Not part of the key's identity.
    learned: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def composite(self) -> bool:
        return len(self.columns) > 1

    # -- encoding of positions in the state table ---------------------------------------------------
    def encode(self, values) -> str:
        return json.dumps(list(values)) if self.composite else values[0]

    def decode(self, text: str) -> list[str]:
        return json.loads(text) if self.composite else [text]

    def params(self, lo: str, hi: str) -> dict:
        """Placeholders for the user's SQL: %(lo)s / %(hi)s, or %(lo_0)s, %(lo_1)s ... for a composite key."""
        if not self.composite:
            return {"lo": lo, "hi": hi}
        params = {f"lo_{i}": v for i, v in enumerate(self.decode(lo))}
        params.update({f"hi_{i}": v for i, v in enumerate(self.decode(hi))})
        return params

    # -- SQL pieces -----------------------------------------------------------------------------------
    def _table(self):
        return sql.Identifier(self.schema, self.table)

    def _row(self):
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL("({})").format(cols) if self.composite else cols

    def _values(self):
        return sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(self.columns))) \
            if self.composite else sql.Placeholder()

    def _select(self, conn=None):
        as_text = sql.SQL(engines.of(conn).state_sql().KEY_AS_TEXT)
        return sql.SQL(", ").join(as_text.format(sql.Identifier(c), sql.Identifier(f"k{i}"))
                                  for i, c in enumerate(self.columns))

    def _order(self, descending: bool = False):
        direction = sql.SQL(" DESC" if descending else "")
        return sql.SQL(", ").join(sql.SQL("{}{}").format(sql.Identifier(c), direction) for c in self.columns)

    def _first(self, conn, where, params, offset: int = 0, descending: bool = False):
        query = sql.SQL(engines.of(conn).state_sql().FIRST_KEY).format(
            sel=self._select(conn), t=self._table(), where=where, order=self._order(descending))
        row = conn.execute(query, [*params, offset]).fetchone()
        return self.encode(list(row)) if row else None

    def _after(self, position: str | None, condition: str | None = None):
        """WHERE the key is past `position` (and `condition`, an expression the operation's parser checked, holds
        for the row); no WHERE for neither."""
        parts, params = [], []
        if condition is not None:  # a `%` in it is the operator: this query also has placeholders
            parts.append(sql.SQL("(" + condition.replace("%", "%%") + ")"))
        if position is not None:
            parts.append(sql.SQL("{} > {}").format(self._row(), self._values()))
            params = self.decode(position)
        if not parts:
            return sql.SQL(""), []
        return sql.SQL("WHERE ") + sql.SQL(" AND ").join(parts), params

    # -- ranges ---------------------------------------------------------------------------------------
    def next_range(self, conn, after: str | None, size: int, condition: str | None = None) -> tuple[str, str] | None:
        """The next `size` keys after `after` as inclusive (lo, hi); None when no key is left. With `condition`:
        the keys of the rows it holds for (the range may hold other keys between them)."""
        if condition is None and after is not None and self.learned.get("computed_left", 0) > 0:
            computed = self._computed_range(int(after), size)
            if computed is not None:
                return computed
        where, params = self._after(after, condition)
        lo = self._first(conn, where, params)
        if lo is None:
            return None
        # each lookup is its own statement: the application may delete every key past `lo` in between (seen under
        # a writer on MariaDB): then the range is `lo` alone, and its batch finds what is left
        hi = self._first(conn, where, params, offset=size - 1) or \
            self._first(conn, where, params, descending=True) or lo
        if condition is None and self._integer(conn):
            dense = int(hi) - int(lo) + 1 == size
            self.learned["computed_left"] = WALK_EVERY - 1 if dense else 0
            if dense:
                self.learned["last"] = int(self._first(conn, where, params, descending=True) or hi)
        return lo, hi

    def _computed_range(self, after: int, size: int) -> tuple[str, str] | None:
        """The range after `after` on a dense integer key, without a statement: ``after + 1`` to ``after + size``,
        capped at the last key the walk saw. None past that key: the walk looks again (the application may have
        added keys since; if not, it finds none and the backfill is done)."""
        last = self.learned.get("last")
        if last is None or after >= last:
            return None
        self.learned["computed_left"] -= 1
        return str(after + 1), str(min(after + size, last))

    def _integer(self, conn) -> bool:
        """A single column of an integer type (asked once per process): only there is `lo + size - 1` a key."""
        if "integer" not in self.learned:
            types = {} if self.composite else engines.of(conn).column_types(conn, self.schema, self.table)
            self.learned["integer"] = bool(INTEGER_TYPE.match(types.get(self.columns[0], "")))
        return self.learned["integer"]

    def between(self, conn=None) -> sql.Composed:
        """`key BETWEEN lo AND hi` with positional placeholders; its parameters: :meth:`bounds`."""
        return sql.SQL(engines.of(conn).state_sql().ROW_BETWEEN).format(row=self._row(), v=self._values())

    def bounds(self, lo: str, hi: str) -> list:
        return [*self.decode(lo), *self.decode(hi)]

    def count(self, conn, lo: str, hi: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {t} WHERE {between}").format(t=self._table(),
                                                                           between=self.between(conn))
        return conn.execute(query, self.bounds(lo, hi)).fetchone()[0]

    def count_where(self, conn, condition: str) -> int:
        """The rows `condition` holds for (a scan: the final sweep's last word only)."""
        where, params = self._after(None, condition)
        return conn.execute(sql.SQL("SELECT count(*) FROM {} ").format(self._table()) + where, params).fetchone()[0]

    def split(self, conn, lo: str, hi: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
        """Two halves of a range (by rows, through the index); None when it holds fewer than two rows."""
        rows = self.count(conn, lo, hi)
        if rows < 2:
            return None
        where = sql.SQL("WHERE {row} >= {v}").format(row=self._row(), v=self._values())
        mid = self._first(conn, where, self.decode(lo), offset=rows // 2 - 1)
        upper = self.next_range(conn, mid, 1)
        return (lo, mid), (upper[0], hi)

    def ranges(self, conn, size: int):
        """Every range of `size` keys, in order (used to restore a snapshot in batches)."""
        position = None
        while (bounds := self.next_range(conn, position, size)) is not None:
            yield bounds
            position = bounds[1]
