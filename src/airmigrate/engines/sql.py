"""SQL composition that no engine owns: SQL, Identifier, Literal, Placeholder and Composed (the vocabulary, and
the API, of PostgreSQL's driver's composition module), as plain data that the target's engine renders.

Why not the driver's own module: stages, operations and the plan build statements with it, and they must not know
which database they build for. These objects carry the structure (which part is an identifier, which a literal,
which a parameter); :func:`airmigrate.engines.of` finds the engine that renders them for a connection (or for the
configured target when there is none), so the same operation renders ``"a"."b"`` for PostgreSQL and could render
`` `a`.`b` `` for another engine. The API is the PostgreSQL driver's, so code reads the same as before.
"""

from __future__ import annotations

import string
from typing import Any, Iterable, Iterator

from airmigrate import engines


class Composable:
    """A piece of a statement; ``+`` joins two, ``as_string(conn)`` renders it for that connection's engine."""

    def __init__(self, obj: Any):
        self._obj = obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._obj!r})"

    def as_string(self, context: Any = None) -> str:
        return engines.of(context).render(self, context)

    def __add__(self, other: "Composable") -> "Composed":
        if isinstance(other, Composable):
            return Composed([self]) + (other if isinstance(other, Composed) else Composed([other]))
        return NotImplemented

    def __mul__(self, n: int) -> "Composed":
        return Composed([self] * n)

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self._obj == other._obj

    __hash__ = None  # mutable lists inside


class Composed(Composable):
    """A sequence of pieces; a value that is not a piece becomes a :class:`Literal`."""

    def __init__(self, seq: Iterable[Any]):
        super().__init__([obj if isinstance(obj, Composable) else Literal(obj) for obj in seq])

    @property
    def seq(self) -> list[Composable]:
        return self._obj

    def __iter__(self) -> Iterator[Composable]:
        return iter(self._obj)

    def __add__(self, other: Composable) -> "Composed":
        if isinstance(other, Composed):
            return Composed(self._obj + other._obj)
        if isinstance(other, Composable):
            return Composed(self._obj + [other])
        return NotImplemented

    def join(self, joiner: "SQL | str") -> "Composed":
        joiner = SQL(joiner) if isinstance(joiner, str) else joiner
        if not isinstance(joiner, SQL):
            raise TypeError(f"Composed.join() argument must be a string or SQL, got {joiner!r} instead")
        return joiner.join(self._obj)


class SQL(Composable):
    """Statement text written by us, never by a user: it is not escaped."""

    _formatter = string.Formatter()

    def __init__(self, obj: str):
        if not isinstance(obj, str):
            raise TypeError(f"SQL values must be strings, got {obj!r} instead")
        super().__init__(obj)

    @property
    def string(self) -> str:
        return self._obj

    def as_string(self, context: Any = None) -> str:
        return self._obj

    def format(self, *args: Any, **kwargs: Any) -> Composed:
        """``{}``, ``{0}`` and ``{name}`` replaced by pieces (other values become literals)."""
        parts: list[Any] = []
        auto: int | None = 0
        for pre, name, spec, conv in self._formatter.parse(self._obj):
            if spec or conv:
                raise ValueError("no format specification or conversion supported by SQL")
            if pre:
                parts.append(SQL(pre))
            if name is None:
                continue
            if name.isdigit():
                if auto:
                    raise ValueError("cannot switch from automatic field numbering to manual")
                parts.append(args[int(name)])
                auto = None
            elif not name:
                if auto is None:
                    raise ValueError("cannot switch from manual field numbering to automatic")
                parts.append(args[auto])
                auto += 1
            else:
                parts.append(kwargs[name])
        return Composed(parts)

    def join(self, seq: Iterable[Any]) -> Composed:
        parts: list[Any] = []
        for i, item in enumerate(seq):
            if i:
                parts.append(self)
            parts.append(item)
        return Composed(parts)


class Identifier(Composable):
    """A name (or a dotted chain: schema, table, column), quoted the engine's way."""

    def __init__(self, *strings: str):
        if not strings:
            raise TypeError("Identifier cannot be empty")
        for s in strings:
            if not isinstance(s, str):
                raise TypeError(f"SQL identifier parts must be strings, got {s!r} instead")
        super().__init__(strings)

    @property
    def strings(self) -> tuple[str, ...]:
        return self._obj

    def __repr__(self) -> str:
        return f"Identifier({', '.join(map(repr, self._obj))})"


class Literal(Composable):
    """A value written into the statement, quoted the engine's way (for DDL, where parameters cannot go)."""

    @property
    def obj(self) -> Any:
        return self._obj


class Placeholder(Composable):
    """A parameter: ``%s``, or ``%(name)s`` when named (the pyformat style both engines' drivers take)."""

    def __init__(self, name: str = ""):
        if not isinstance(name, str):
            raise TypeError(f"expected string as name, got {name!r}")
        if ")" in name:
            raise ValueError(f"invalid name: {name!r}")
        super().__init__(name)

    @property
    def name(self) -> str:
        return self._obj


class Json:
    """A parameter to store as the engine's JSON type (PostgreSQL: jsonb)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __repr__(self) -> str:
        return f"Json({self.obj!r})"
