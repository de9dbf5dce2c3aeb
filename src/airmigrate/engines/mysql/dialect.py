"""The statements the MySQL engine writes, as MySQL 8.0 takes them: MariaDB's forms rendered and run in MySQL 8's
(issue 22: "MySQL 8 / MariaDB 10.11+").

Why one module: every generator (the operations, :mod:`.op_constraints`, :mod:`.op_columns`) writes the MariaDB
10.11 form, whose ``IF [NOT] EXISTS`` clauses and anonymous blocks make a retried or resumed step do nothing
twice. MySQL 8.0 has none of those forms; rather than branch in each generator, the executor and the plan pass
each statement through :func:`steps` once, on the server's flavor (:func:`flavor`), so the plan shows what runs.

What changes, each checked against the MySQL 8.0 reference manual:
- ``ALTER TABLE`` clauses ``ADD COLUMN|[UNIQUE] INDEX|CONSTRAINT IF NOT EXISTS``, ``FOREIGN KEY IF NOT EXISTS``,
  ``DROP COLUMN|INDEX|CONSTRAINT|FOREIGN KEY IF EXISTS``, ``RENAME INDEX IF EXISTS`` (MySQL 8's ALTER TABLE has no
  IF [NOT] EXISTS): the clause without it, guarded by information_schema, asked just before the statement runs; a
  clause whose work is done is left out, a statement with none left is not sent. The plan shows the guard as a
  comment on the clause. ``RENAME TABLE IF EXISTS`` the same way (MySQL 8: ``RENAME TABLE a TO b`` only).
- ``SET STATEMENT v = x FOR s`` (MariaDB only): ``SET @saved = @@SESSION.v; SET SESSION v = x; s; SET SESSION v =
  @saved``, the restore run even when `s` fails (what MariaDB's manual says SET STATEMENT amounts to).
- ``BEGIN NOT ATOMIC ... END`` (MySQL runs compound statements only in stored programs): a procedure of the same
  body in the session's database (so unqualified names mean what they meant), created, called once and dropped,
  the drop also after a failed call (a name derived from the body: a retry replaces a left-over one).
- ``ALGORITHM=NOCOPY`` (MySQL: DEFAULT, INSTANT, INPLACE, COPY): never asked for (:mod:`.online`'s ladder skips it).
What does not change: ``CREATE OR REPLACE ... VIEW``, ``DROP TRIGGER|PROCEDURE|TABLE IF EXISTS``, ``CREATE TABLE IF
NOT EXISTS`` (MySQL 8 has them); the session's limits are the server's own (:func:`.ddl.set_timeouts`).

The switch ``AIRMIGRATE_MYSQL_DIALECT=mysql8`` makes a MariaDB server get the MySQL 8 forms too, which it runs as
well: that is how they are tested here without a MySQL 8 server (the README's "MySQL / MariaDB" says what that
leaves unverified).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field

from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

from airmigrate.engines.mysql.connection import quote_identifier
from airmigrate.engines.mysql.parsing import first_word, tokenize
from airmigrate.engines.mysql.state_names import schema_of

log = logging.getLogger(__name__)

SWITCH = "AIRMIGRATE_MYSQL_DIALECT"
MARIADB, MYSQL8 = "mariadb", "mysql8"
BLOCK_PREFIX = "airmigrate_block_"
OPTIONS = ("ALGORITHM", "LOCK")  # an ALTER's options: no change by themselves
RENAME_IF_EXISTS = re.compile(r"\s*RENAME\s+TABLE\s+IF\s+EXISTS\s+(.*)\Z", re.I | re.S)

# information_schema's view of each kind of object a clause names: (table, name column, extra condition)
WHERE = {"column": ("COLUMNS", "COLUMN_NAME", ""),
         "index": ("STATISTICS", "INDEX_NAME", ""),
         "constraint": ("TABLE_CONSTRAINTS", "CONSTRAINT_NAME", ""),
         "foreign key": ("TABLE_CONSTRAINTS", "CONSTRAINT_NAME", " AND CONSTRAINT_TYPE = 'FOREIGN KEY'"),
         "table": ("TABLES", "TABLE_NAME", "")}
SCHEMA_COLUMN = {"TABLE_CONSTRAINTS": "CONSTRAINT_SCHEMA"}


def flavor(conn=None) -> str:
    """MYSQL8 when the switch says so or the server is not MariaDB; MARIADB otherwise (and without a connection,
    unless the switch says so: the forms airmigrate has always shown)."""
    if os.environ.get(SWITCH, "").strip().lower() in (MYSQL8, "mysql"):
        return MYSQL8
    if conn is not None and not getattr(conn, "is_mariadb", True):
        return MYSQL8
    return MARIADB


@dataclass(frozen=True)
class Guard:
    """The clause runs only when `kind` `name` on `schema`.`table` is absent (`absent`) or present (not `absent`)."""
    kind: str
    schema: str | None
    table: str
    name: str
    absent: bool

    def comment(self) -> str:
        view = WHERE[self.kind][0]
        return (f"/* airmigrate: left out when information_schema.{view} has {self.kind} {self.name} */"
                if self.absent else
                f"/* airmigrate: left out unless information_schema.{view} has {self.kind} {self.name} */")

    def needed(self, conn) -> bool:
        view, column, extra = WHERE[self.kind]
        schema_column = SCHEMA_COLUMN.get(view, "TABLE_SCHEMA")
        name_filter = "" if self.kind == "table" else " AND TABLE_NAME = %s"
        params = (schema_of(conn, self.schema) if self.schema else _database(conn),
                  *(() if self.kind == "table" else (self.table,)), self.name)
        found = conn.execute(f"SELECT COUNT(*) FROM information_schema.{view} WHERE {schema_column} = %s"
                             f"{name_filter} AND {column} = %s{extra}", params).fetchone()[0]
        return not found if self.absent else bool(found)


@dataclass
class Step:
    """One statement as MySQL 8 takes it: `head` then the `clauses` (each with its guard or None) joined by commas;
    `always`: run after an earlier step failed too (a restore, a drop)."""
    head: str
    clauses: list[tuple[str, Guard | None]] = field(default_factory=list)
    always: bool = False

    def text(self, keep=None) -> str | None:
        """The statement; with `keep` (a predicate on guards) only the clauses it keeps, None when no change is
        left (only ALGORITHM= / LOCK= options, or nothing)."""
        clauses = [(c, g) for c, g in self.clauses if keep is None or g is None or keep(g)]
        if self.clauses and not any(re.split(r"[\s=]", c, 1)[0].upper() not in OPTIONS for c, _ in clauses):
            return None
        if not self.clauses:
            return self.head
        shown = [f"{c} {g.comment()}" if g is not None and keep is None else c for c, g in clauses]
        return self.head + " " + ", ".join(shown) if self.head else ", ".join(shown)

    @property
    def guarded(self) -> bool:
        return any(g is not None for _, g in self.clauses)


def steps(statement: str) -> list[Step]:
    """`statement` (MariaDB's form) as the MySQL 8 steps that do the same; one plain step when it needs none."""
    try:
        tokens = tokenize(statement)
    except TokenError:
        return [Step(statement)]
    words = [_word(t) for t in tokens]
    if words[:3] == ["BEGIN", "NOT", "ATOMIC"]:
        return _procedure(statement, tokens)
    if words[:2] == ["SET", "STATEMENT"]:
        return _set_statement(statement, tokens, words)
    if words[:2] == ["ALTER", "TABLE"] and "EXISTS" in words:
        return [_alter(statement, tokens, words)]
    renamed = RENAME_IF_EXISTS.match(statement)
    if renamed:  # sqlglot's tokenizer reads RENAME as a command and the rest as one string
        return [_rename_table(renamed.group(1))]
    return [Step(statement)]


def shown(statement: str, conn=None) -> list[str]:
    """What the plan shows for `statement` on this connection's server (the switch without one)."""
    if flavor(conn) == MARIADB:
        return [statement]
    return [s.text() for s in steps(statement)]


def to_run(conn, statement: str) -> list[tuple[str, bool]]:
    """(statement, always) pairs to send now, the guards asked of information_schema (on MariaDB: the statement)."""
    if flavor(conn) == MARIADB:
        return [(statement, False)]
    out = []
    for step in steps(statement):
        text = step.text(keep=lambda g: g.needed(conn)) if step.guarded else step.text(keep=lambda g: True)
        if text is None:
            log.info("already in place (information_schema says so): %s", step.text()[:200])
            continue
        out.append((text, step.always))
    return out


# ---------------------------------------------------------------------------------------------------------------

def _word(token) -> str:
    return "" if token.token_type in (TokenType.STRING, TokenType.IDENTIFIER) else token.text.upper()


def _name(token) -> str:
    return token.text[1:-1].replace("``", "`") if token.text.startswith("`") else token.text


def _database(conn) -> str:
    return conn.execute("SELECT DATABASE()").fetchone()[0]


def _cut_if(tokens, at: int) -> tuple[str, int] | None:
    """When tokens[at] starts IF [NOT] EXISTS: ("absent" or "present", the index of the token after it)."""
    nxt = [_word(t) for t in tokens[at + 1:at + 3]]
    if _word(tokens[at]) != "IF":
        return None
    if nxt[:2] == ["NOT", "EXISTS"]:
        return "absent", at + 3
    if nxt[:1] == ["EXISTS"]:
        return "present", at + 2
    return None


def _table(tokens, at: int) -> tuple[str | None, str, int]:
    """(schema, table, index after it) of the [schema.]table at tokens[at]."""
    if at + 2 < len(tokens) and tokens[at + 1].token_type == TokenType.DOT:
        return _name(tokens[at]), _name(tokens[at + 2]), at + 3
    return None, _name(tokens[at]), at + 1


KINDS = {("ADD", "COLUMN"): "column", ("DROP", "COLUMN"): "column", ("ADD", "INDEX"): "index",
         ("ADD", "KEY"): "index", ("ADD", "UNIQUE", "INDEX"): "index", ("ADD", "UNIQUE", "KEY"): "index",
         ("ADD", "UNIQUE"): "index", ("DROP", "INDEX"): "index", ("DROP", "KEY"): "index",
         ("RENAME", "INDEX"): "index", ("RENAME", "KEY"): "index", ("ADD", "CONSTRAINT"): "constraint",
         ("DROP", "CONSTRAINT"): "constraint", ("DROP", "CHECK"): "constraint",
         ("DROP", "FOREIGN", "KEY"): "foreign key"}


def _alter(statement: str, tokens, words) -> Step:
    """ALTER TABLE t <clause>, <clause>...: each clause without its IF [NOT] EXISTS, with its guard."""
    schema, table, at = _table(tokens, 2)
    head = statement[:tokens[at - 1].end + 1]
    clauses, depth, start = [], 0, at
    for i in range(at, len(tokens) + 1):
        if i < len(tokens):
            kind = tokens[i].token_type
            depth += kind == TokenType.L_PAREN
            depth -= kind == TokenType.R_PAREN
            if not (kind == TokenType.COMMA and depth == 0):
                continue
        if start < i:
            clauses.append(_clause(statement, tokens, words, start, i, schema, table))
        start = i + 1
    return Step(head, clauses)


def _clause(statement: str, tokens, words, start: int, end: int, schema, table) -> tuple[str, Guard | None]:
    text = statement[tokens[start].start:tokens[end - 1].end + 1]
    for i in range(start, end):
        cut = _cut_if(tokens, i)
        if cut is None:
            continue
        absent, after = cut
        lead = tuple(w for word in words[start:i] for w in word.split())  # FOREIGN KEY is one token
        if lead[-2:] == ("FOREIGN", "KEY") and "CONSTRAINT" in lead:   # ADD CONSTRAINT c FOREIGN KEY IF NOT EXISTS
            kind, name = "foreign key", _name(tokens[start + lead.index("CONSTRAINT") + 1])
        else:
            kind, name = KINDS.get(lead), _name(tokens[after]) if after < end else ""
        if kind is None or not name:
            return text, None  # not a form this knows: sent as written (the server judges it)
        without = (statement[tokens[start].start:tokens[i].start] + statement[tokens[after].start:
                                                                              tokens[end - 1].end + 1])
        return without.rstrip(), Guard(kind, schema, table, name, absent == "absent")
    return text, None


def _rename_table(pairs: str) -> Step:
    """RENAME TABLE IF EXISTS a TO b: without the clause, when a exists."""
    schema, table, _ = _table(tokenize(pairs), 0)
    return Step("", [(("RENAME TABLE " + pairs).rstrip(), Guard("table", schema, table, table, False))])


def _set_statement(statement: str, tokens, words) -> list[Step]:
    """SET STATEMENT a = x, b = y FOR s: each saved, set for the session, s, each restored (also after a failure)."""
    at = words.index("FOR")
    settings, start = [], 2
    for i in range(2, at + 1):  # the values are constant literals (MariaDB's rule): a comma ends one
        if i == at or tokens[i].token_type == TokenType.COMMA:
            variable = tokens[start].text
            value = statement[tokens[start + 2].start:tokens[i - 1].end + 1]
            settings.append((variable, value))
            start = i + 1
    inner = statement[tokens[at].end + 1:].strip()
    saved = [f"@airmigrate_saved_{v}" for v, _ in settings]
    return ([Step(f"SET {s} = @@SESSION.{v}") for s, (v, _) in zip(saved, settings)]
            + [Step(f"SET SESSION {v} = {x}") for v, x in settings] + steps(inner)
            + [Step(f"SET SESSION {v} = {s}", always=True) for s, (v, _) in zip(saved, settings)])


def _procedure(statement: str, tokens) -> list[Step]:
    """BEGIN NOT ATOMIC body END: a procedure with that body in the session's database, called once, dropped."""
    body = "BEGIN " + statement[tokens[3].start:] if len(tokens) > 3 else "BEGIN END"
    name = quote_identifier(BLOCK_PREFIX + hashlib.sha1(body.encode()).hexdigest()[:16])
    return [Step(f"DROP PROCEDURE IF EXISTS {name}"), Step(f"CREATE PROCEDURE {name}() {body}"),
            Step(f"CALL {name}()"), Step(f"DROP PROCEDURE IF EXISTS {name}", always=True)]


def is_block_procedure(statement: str) -> bool:
    """A step of a translated anonymous block (for the plan's lock analysis: it locks nothing by itself)."""
    return BLOCK_PREFIX in statement and first_word(statement) in ("CREATE", "DROP", "CALL")
