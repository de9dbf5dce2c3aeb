"""SQL text as MySQL reads it, through sqlglot's MySQL dialect: statements split, grouped by what may share a
transaction, syntax errors with their line, one type / expression / SELECT re-rendered.

sqlglot is not the server's parser. Two consequences, both deliberate:
- it parses DML well but falls back to an opaque ``Command`` for some DDL (``ALTER ONLINE TABLE``, ``CREATE
  TRIGGER``) and refuses some valid MariaDB DDL (``ADD INDEX IF NOT EXISTS``); so a DDL statement it cannot
  read is *not* reported as a syntax error: the server judges it (the lock probe asks it on an empty copy).
  A false "syntax error" would block a valid migration; a missed one fails in milliseconds at the server.
- the splitter uses sqlglot's tokenizer only (strings, comments and backticks are respected), plus
  BEGIN ... END nesting for stored programs, so a trigger body's ``;`` does not cut it in two (no
  ``DELIMITER``: that is a command of the mysql client, not SQL).
Batch placeholders (``%(lo)s``) are quoted into literals first (``sqlfiles.bound_placeholders``).
"""

from __future__ import annotations

import logging
import re

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from airmigrate.sqlfiles import bound_placeholders

DIALECT = "mysql"
_MYSQL = Dialect.get_or_raise(DIALECT)
logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to Command" is expected, see above

# Statements that commit implicitly on MySQL (the docs' "Statements That Cause an Implicit Commit"); anything
# else is DML or session state and may share a transaction.
DML = {"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "DO", "VALUES", "TABLE"}
STORED_PROGRAMS = {"TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"}
DDL_KEYWORDS = {"ALTER", "CREATE", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE", "ANALYZE", "REPAIR"}


def tokenize(text: str):
    """sqlglot's MySQL tokens of `text` (strings, comments and backticks respected): the splitter's, the online
    probe's and the MySQL 8 forms' one reading of a statement."""
    return _MYSQL.tokenize(text)


def statement_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of each statement, without the ``;`` (comments between statements are
    left out). A stored program's body (``BEGIN ... END``) is one statement: ``BEGIN`` and ``CASE`` open a
    level, ``END`` closes one unless ``IF``/``LOOP``/``WHILE``/``REPEAT`` follows it (those close their own
    statements inside the body)."""
    spans: list[tuple[int, int]] = []
    tokens = tokenize(text)
    start = end = None
    depth, program = 0, False
    for i, token in enumerate(tokens):
        word = token.text.upper() if token.token_type not in (TokenType.STRING, TokenType.IDENTIFIER) else ""
        if token.token_type == TokenType.SEMICOLON and depth <= 0:
            if start is not None:
                spans.append((start, end))
            start = end = None
            depth, program = 0, False
            continue
        if start is None:
            start = token.start
        end = token.end + 1
        if word in STORED_PROGRAMS and tokens[0] is not token and _starts_create(tokens, i):
            program = True
        if word == "BEGIN" and token.start == start and _not_atomic(tokens, i):
            program = True  # MariaDB's anonymous block: a body like a stored program's, run at once
        if not program:
            continue
        after = tokens[i + 1].text.upper() if i + 1 < len(tokens) else ""
        before = tokens[i - 1].text.upper() if i else ""
        if word == "BEGIN" or (word == "CASE" and before != "END"):
            depth += 1
        elif word == "END" and after not in ("IF", "LOOP", "WHILE", "REPEAT"):
            depth -= 1
    if start is not None:
        spans.append((start, end))
    return spans


def _starts_create(tokens, i: int) -> bool:
    """Is token i the object word of a ``CREATE [OR REPLACE] [DEFINER = x] ... TRIGGER|PROCEDURE|...``?"""
    back = i
    while back > 0 and tokens[back - 1].token_type != TokenType.SEMICOLON:
        back -= 1
    return tokens[back].text.upper() == "CREATE"


def _not_atomic(tokens, i: int) -> bool:
    """Is token i the BEGIN of ``BEGIN NOT ATOMIC`` (MariaDB's compound statement outside a stored program)?"""
    return i + 2 < len(tokens) and tokens[i + 1].text.upper() == "NOT" and tokens[i + 2].text.upper() == "ATOMIC"


def _is_block(statement: str) -> bool:
    return statement.split(None, 3)[:3] == ["BEGIN", "NOT", "ATOMIC"] or \
        [w.upper() for w in statement.split(None, 3)[:3]] == ["BEGIN", "NOT", "ATOMIC"]


def split_statements(text: str) -> list[str]:
    """A SQL file as its statements (see :func:`statement_spans`); a file the tokenizer cannot read (an
    unterminated string) is one statement, for the server or the syntax check to refuse."""
    try:
        return [text[a:b].strip() for a, b in statement_spans(text) if text[a:b].strip()]
    except TokenError:
        return [text.strip()] if text.strip() else []


def first_word(statement: str) -> str:
    words = statement.lstrip("( \n\t").split(None, 1)
    return words[0].upper() if words else ""


TEMPORARY = re.compile(r"\s*(?:CREATE|DROP)\s+TEMPORARY\s+TABLE\b", re.I)


def needs_autocommit(statement: str) -> bool:
    """Does this statement commit implicitly (DDL, and everything but DML)? On MySQL a DDL statement ends the
    transaction it is in, so it always runs on its own. CREATE / DROP TEMPORARY TABLE is the exception the
    server makes (no implicit commit): the pandas path's scratch table is made inside the batch's transaction."""
    if TEMPORARY.match(statement):
        return False
    return first_word(statement) not in DML


def group_statements(statements: list[str]) -> list[tuple[bool, list[str]]]:
    """Consecutive DML statements share one transaction; each DDL statement stands alone (MySQL commits
    before and after it whatever we ask, so a group could never be atomic: the state records each step).
    From ``LOCK TABLES`` to ``UNLOCK TABLES`` the statements run together in one session (a swap of two
    columns with the trigger that syncs them: nothing the application writes falls between)."""
    groups: list[tuple[bool, list[str]]] = []
    locked = False
    for statement in statements:
        auto = needs_autocommit(statement)
        words = " ".join(statement.split()[:2]).upper()
        if locked:
            groups[-1][1].append(statement)
            locked = words != "UNLOCK TABLES"
        elif words == "LOCK TABLES":
            groups.append((True, [statement]))
            locked = True
        elif not auto and groups and not groups[-1][0]:
            groups[-1][1].append(statement)
        else:
            groups.append((auto, [statement]))
    return groups


def parse_one(statement: str) -> exp.Expression | None:
    """sqlglot's tree of one statement (placeholders bound), None when it does not parse."""
    try:
        trees = sqlglot.parse(bound_placeholders(statement), read=DIALECT)
    except (ParseError, TokenError):
        return None
    return trees[0] if len(trees) == 1 else None


def syntax_error(text: str) -> tuple[int, str] | None:
    """The first syntax error as (line, message), or None. DDL sqlglot cannot read is left to the server (see
    the module's doc)."""
    text = bound_placeholders(text)
    try:
        spans = statement_spans(text)
    except TokenError as exc:
        return 1, f"cannot read the SQL: {str(exc).splitlines()[0]}"
    for a, b in spans:
        statement = text[a:b]
        if first_word(statement) in DDL_KEYWORDS or _is_block(statement):
            continue  # the server judges it (an anonymous block is a stored program's body: sqlglot reads none)
        try:
            sqlglot.parse(statement, read=DIALECT)
        except ParseError as exc:
            error = (exc.errors or [{}])[0]
            line = text.count("\n", 0, a) + int(error.get("line") or 1)
            return line, str(error.get("description") or str(exc).splitlines()[0])
        except TokenError as exc:
            return text.count("\n", 0, a) + 1, str(exc).splitlines()[0]
    return None


def _one(text: str, value: str, what: str) -> exp.Select:
    try:
        trees = sqlglot.parse(text, read=DIALECT)
    except (ParseError, TokenError) as exc:
        raise ValueError(f"'{value}' is not {what} ({str(exc).splitlines()[0]})") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        raise ValueError(f"'{value}' must be exactly one {what.split(' ', 1)[1]}")
    return trees[0]


def _same_meaning(original: exp.Expression, rendered: str, value: str, problem: str) -> None:
    """The rendering parses back to the same tree: what runs is what was checked."""
    try:
        again = sqlglot.parse(rendered, read=DIALECT)
    except (ParseError, TokenError):
        again = None
    if not again or len(again) != 1 or again[0] != original:
        raise ValueError(f"'{value}' {problem}")


def one_select(value: str) -> str:
    """Exactly one SELECT, as sqlglot renders it for MySQL."""
    tree = _one(value, value, "a SELECT statement")
    return tree.sql(DIALECT)


def check_type(value: str) -> str:
    """Exactly one MySQL type name (``BIGINT``, ``DECIMAL(12,2)``, ``VARCHAR(20)``), re-rendered: a trailing
    comment or a second statement cannot survive into DDL."""
    tree = _one(f"SELECT CAST(NULL AS {value})", value, "a MySQL type")
    cast = tree.expressions[0] if len(tree.expressions) == 1 else None
    if not isinstance(cast, exp.Cast):   # anything else that rode along fails _same_meaning below
        raise ValueError(f"'{value}' must be one type name")
    rendered = cast.to.sql(DIALECT)
    _same_meaning(tree, f"SELECT CAST(NULL AS {rendered})", value, "must be one type name")
    return rendered


def check_expression(value: str) -> str:
    """Exactly one expression over the row's columns, re-rendered (an alias, FROM, WHERE ... makes the trees
    differ, so it is refused)."""
    tree = _one(f"SELECT {value}", value, "a SQL expression")
    if len(tree.expressions) != 1 or isinstance(tree.expressions[0], exp.Alias):
        raise ValueError(f"'{value}' must be one expression")
    rendered = tree.expressions[0].sql(DIALECT)
    _same_meaning(tree, f"SELECT {rendered}", value, "must be one expression")
    return rendered


def on_record(expression: str, record: str = "NEW") -> str:
    """``LENGTH(full_name)`` -> ``LENGTH(NEW.full_name)``: the expression on a trigger's row."""
    tree = sqlglot.parse_one(f"SELECT {expression}", read=DIALECT).expressions[0]

    def qualify(node):
        if isinstance(node, exp.Column) and not node.table:
            return exp.column(node.name, table=record, quoted=node.this.quoted)
        return node
    return tree.transform(qualify).sql(DIALECT)


def columns_read(expression: str) -> list[str]:
    """The columns an expression reads, in order of first mention."""
    try:
        tree = sqlglot.parse_one(f"SELECT {expression}", read=DIALECT)
    except (ParseError, TokenError):
        return []
    names = sorted(tree.find_all(exp.Column), key=lambda c: _position(c))
    return list(dict.fromkeys(c.name for c in names))


def _position(node: exp.Expression) -> int:
    """A node's place in the text, for ordering (sqlglot's find_all walks breadth first)."""
    meta = node.this.meta if isinstance(node.this, exp.Expression) else {}
    return int(meta.get("start", 0))
