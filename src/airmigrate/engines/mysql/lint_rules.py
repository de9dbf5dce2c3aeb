"""MySQL's lint rules, over sqlglot's tree (no server: lint runs before anything connects).

A first set, the ones that matter most on MySQL:
- ``mysql-table-copy``: an ALTER the server does only by copying the table under a shared lock (a type change,
  ADD CHECK, a charset change): writes stop for the whole copy. Recipe: pt-online-schema-change, or expand /
  backfill / swap; a migration with `executor: pt-osc` has it acknowledged (the engine's ``executor_rules``).
  Read conservatively from the tree; the plan asks the server itself (the empty-copy probe).
- ``destructive-in-expand``, ``unbatched-update``, ``unbatched-delete``, ``backfill-single-update``,
  ``backfill-unbounded``, ``syntax-error``: the neutral rules, read from MySQL's SQL.
Not a rule: an ALTER without ALGORITHM/LOCK. The executor asks the server and writes the online algorithm into
every ALTER itself, so the user need not (and a written one is respected).
"""

from __future__ import annotations

from pathlib import Path

from sqlglot import exp

from airmigrate.engines.mysql import online
from airmigrate.engines.mysql.parsing import first_word, parse_one, statement_spans, syntax_error
from airmigrate.findings import RECIPES, Finding
from airmigrate.sqlfiles import BOUND_LITERAL, batch_names

COPY_RECIPE = ("add `executor: pt-osc` to migration.yaml (pt-online-schema-change copies the table online with "
               "triggers); or add a new column, backfill it in batches, then swap in cleanup")
MYSQL_RECIPES = {**RECIPES, "mysql-table-copy": COPY_RECIPE,
                 "syntax-error": "fix the SQL so MySQL can parse it"}


def lint_sql(path: Path, text: str, role: str, version: str, key_columns: tuple[str, ...] | None,
             generated: bool) -> list[Finding]:
    """Every finding of one SQL file (batch placeholders already bound as literals); `version` is unused (the
    plan asks the server for what depends on it)."""
    findings: list[Finding] = []

    def add(line: int, rule: str, message: str) -> None:
        findings.append(Finding(str(path), line, rule, message, MYSQL_RECIPES[rule]))

    error = syntax_error(text)
    if error:
        add(error[0], "syntax-error", error[1])
    try:
        spans = statement_spans(text)
    except Exception:  # the tokenizer refused the file: syntax-error said so
        return findings
    updates = 0
    for start, end in spans:
        statement, line = text[start:end], text.count("\n", 0, start) + 1
        word, tree = first_word(statement), parse_one(statement)
        if role == "up" and _destroys(word, tree):
            add(line, "destructive-in-expand", f"{_describe(word, tree)} in the expand step, before validation")
        if word == "ALTER" and online.table_span(statement):
            own = online.written(statement)
            copies = own.get("ALGORITHM") == "COPY" or own.get("LOCK") in ("SHARED", "EXCLUSIVE") if own else \
                online.guess(statement).algorithm == "COPY"
            if copies:
                add(line, "mysql-table-copy", "this ALTER copies or locks the whole table with writes blocked "
                    "(ALGORITHM=COPY, LOCK=SHARED or EXCLUSIVE): every INSERT/UPDATE/DELETE waits until it ends")
        if role in ("up", "cleanup") and word == "UPDATE" and tree is not None and tree.args.get("where") is None:
            add(line, "unbatched-update", "UPDATE without WHERE touches every row in one transaction")
        if role in ("up", "cleanup") and word == "DELETE":
            add(line, "unbatched-delete", "DELETE in one transaction: its row locks are held to the end and the "
                "undo log grows with every row")
        if role == "backfill" and word in ("UPDATE", "DELETE", "INSERT"):
            updates += word == "UPDATE"
            problem = _unbounded(tree, key_columns)
            if problem:
                add(line, "backfill-unbounded", problem)
    if role == "backfill" and not generated and not (len(spans) == 1 and updates == 1) and not error:
        add(1, "backfill-single-update", f"backfill.sql holds {len(spans)} statement(s); it must be exactly one UPDATE")
    return findings


def _destroys(word: str, tree) -> bool:
    if word == "TRUNCATE":
        return True
    if isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
        return True
    return isinstance(tree, exp.Alter) and any(
        isinstance(a, exp.Drop) and (a.args.get("kind") or "").upper() == "COLUMN" for a in tree.args.get("actions") or ())


def _describe(word: str, tree) -> str:
    if isinstance(tree, exp.Alter):
        return "DROP COLUMN"
    return "DROP TABLE" if word == "DROP" else word


def _unbounded(tree, key_columns: tuple[str, ...] | None) -> str | None:
    """Why a per-batch statement does not stay inside its key range: the batch placeholders must be in the
    WHERE's top-level AND conditions (not inside an OR, a NOT or a subquery); an INSERT ... SELECT's in its
    SELECT's."""
    if tree is None:
        return None
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Select):  # INSERT ... SELECT: its rows
        tree = tree.expression
    where = tree.args.get("where")
    if where is None:
        return "no WHERE: every batch would change every row"
    found: set[str] = set()
    _bounding(where.this, found)
    expected = batch_names(key_columns) or {"lo", "hi"}
    if not ({"lo", "hi"} <= found or expected <= found):
        return ("the WHERE does not bound the rows by the batch's key range in its top-level AND conditions: "
                "WHERE <key> BETWEEN %(lo)s AND %(hi)s")
    return None


def _bounding(node, found: set[str]) -> None:
    if isinstance(node, exp.And):
        _bounding(node.this, found)
        _bounding(node.expression, found)
        return
    if isinstance(node, (exp.Or, exp.Not, exp.Subquery, exp.Select)):
        return
    for literal in node.find_all(exp.Literal):
        if any(isinstance(p, (exp.Subquery, exp.Select, exp.Or, exp.Not)) for p in _parents(literal, node)):
            continue
        match = BOUND_LITERAL.match(literal.this if literal.is_string else "")
        if match:
            found.add(match.group(1))


def _parents(node, stop):
    parent = node.parent
    while parent is not None and parent is not stop:
        yield parent
        parent = parent.parent
