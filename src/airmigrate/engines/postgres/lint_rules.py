"""PostgreSQL's lint rules: squawk (PyPI ``squawk-cli``, PostgreSQL's locking pitfalls) plus our own rules over
pglast's tree (a destructive statement belongs in the contract step, a full-table UPDATE in a batched backfill, a
backfill is one bounded UPDATE). :func:`lint_sql` is what the engine offers ``airmigrate.lint``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast, enums, visitors
from pglast.parser import ParseError, scan

from airmigrate.engines.postgres.parsing import parse_error_at
from airmigrate.findings import RECIPES, Finding
from airmigrate.sqlfiles import BATCH_NAME, BOUND_LITERAL, batch_names

# Rules squawk checks that airmigrate already guarantees (timeouts, re-runnability) or that are style.
SQUAWK_EXCLUDED = (
    "require-lock-timeout",         # the executor sets lock_timeout on every statement
    "require-statement-timeout",    # ... and statement_timeout
    "prefer-robust-stmts",          # finished statement groups are recorded and never re-run
    "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
)

DROPS_ALLOWED = {"ban-drop-column", "ban-drop-table", "ban-drop-function", "ban-drop-constraint", "ban-drop-trigger"}
# The generated contract swaps a column only after the sync trigger kept both names equal, and retires
# a dropped table into the airmigrate schema (rename + SET SCHEMA) instead of dropping it; rename_table leaves a view
# under the old name, and rename_index / rename_constraint rename what no application statement names.
GENERATED_ALLOWED = {"renaming-column", "renaming-table", "ban-set-schema", "renaming-object"}
GENERATED_EXPAND_ALLOWED = {"renaming-object"}  # rename_index: the index keeps working, only its name changes


def squawk_binary() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(found).exists():
        raise FileNotFoundError("squawk not found: install the squawk-cli package (make setup does)")
    return found


def run_squawk(path: Path, text: str, pg_version: str) -> list[Finding]:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as tmp:
        tmp.write(text)
    try:
        cmd = [squawk_binary(), f"--pg-version={pg_version}", "--reporter", "json", tmp.name]
        for rule in SQUAWK_EXCLUDED:
            cmd += ["-e", rule]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    if out.returncode not in (0, 1) or not out.stdout.strip().startswith("["):
        raise RuntimeError(f"squawk failed on {path}: {out.stderr.strip()[:300]}")
    return [Finding(str(path), f["line"] + 1, f["rule_name"], f["message"],
                    RECIPES.get(f["rule_name"]) or f.get("help") or "see squawk's documentation")
            for f in json.loads(out.stdout)]


@dataclass
class ParsedSQL:
    """A SQL file read statement by statement: what parses is linted, every statement that does not is reported."""

    statements: list = field(default_factory=list)   # (1-based line, pglast node)
    errors: list = field(default_factory=list)       # (1-based line, message)
    broken: list = field(default_factory=list)       # (start, end) character spans that did not parse


def parse_statements(text: str) -> ParsedSQL:
    """The whole file at once when it parses; otherwise each `;`-separated statement on its own, so one
    typo does not hide the findings (and the other typos) of the rest of the file."""
    try:
        return ParsedSQL([(_first_code_line(text, raw.stmt_location or 0), raw.stmt) for raw in pglast.parse_sql(text)])
    except ParseError as whole:
        parsed = ParsedSQL()
        for start, end in _statement_spans(text, parsed):
            _parse_piece(text, start, end, parsed)
        if not parsed.errors:  # splitting hid the error (e.g. a `;` inside BEGIN ATOMIC): report the file's
            parsed.errors.append(parse_error_at(text, whole))
        return parsed


def _statement_spans(text: str, parsed: ParsedSQL) -> list[tuple[int, int]]:
    """(start, end) of each statement, cut at the `;` tokens of PostgreSQL's own scanner (so quotes, dollar
    bodies and comments are respected). An unterminated quote or comment swallows the rest of the file:
    it is reported and marked broken; the statements before it are still returned."""
    limit = len(text)
    try:
        tokens = scan(text)
    except ParseError as exc:
        parsed.errors.append(parse_error_at(text, exc))
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        tokens = scan(text[:limit])
    spans, start = [], 0
    for token in tokens:
        if token.name == "ASCII_59":  # ';'
            spans.append((start, token.start))
            start = token.end + 1
    if limit == len(text):
        spans.append((start, len(text)))
    else:
        parsed.broken.append((start, len(text)))
    return spans


def _parse_piece(text: str, start: int, end: int, parsed: ParsedSQL) -> None:
    piece = text[start:end]
    try:
        nodes = pglast.parse_sql(piece)
    except ParseError as exc:
        line, message = parse_error_at(piece, exc)
        parsed.errors.append((text.count("\n", 0, start) + line, message))
        parsed.broken.append((start, end))
        return
    parsed.statements += [(_first_code_line(text, start + (raw.stmt_location or 0)), raw.stmt) for raw in nodes]


def without_broken(text: str, parsed: ParsedSQL) -> str:
    """The text with the statements that do not parse blanked out (newlines kept, so squawk's lines stay true)."""
    chars = list(text)
    for start, end in parsed.broken:
        chars[start:end] = [c if c == "\n" else " " for c in text[start:end]]
    return "".join(chars)


def _first_code_line(text: str, i: int) -> int:
    """Skip the whitespace and comments pglast counts into a statement's location."""
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i)
            i = len(text) if end < 0 else end + 2
        else:
            break
    return text.count("\n", 0, i) + 1


def own_rules(path: Path, text: str, role: str, key_columns: tuple[str, ...] | None = None,
              generated: bool = False, parsed: ParsedSQL | None = None) -> list[Finding]:
    """airmigrate's rules; `role` is the file's part: up, down, backfill or cleanup."""
    parsed = parsed or parse_statements(text)
    findings = [Finding(str(path), line, "syntax-error", message, RECIPES["syntax-error"])
                for line, message in parsed.errors]

    def add(line, rule, message):
        findings.append(Finding(str(path), line, rule, message, RECIPES[rule]))

    statements = parsed.statements
    for line, node in statements:
        kind = type(node).__name__
        if role == "up" and _is_destructive(node):
            add(line, "destructive-in-expand", f"{_describe(node)} in the expand step, before validation")
        if role in ("up", "cleanup") and kind == "UpdateStmt" and node.whereClause is None:
            add(line, "unbatched-update", "UPDATE without WHERE touches every row in one transaction")
        if role in ("up", "cleanup") and kind == "DeleteStmt":  # a WHERE does not make it small
            add(line, "unbatched-delete", "DELETE " + ("without WHERE" if node.whereClause is None else
                                                       "of every matching row") + " in one transaction: their row "
                "locks held to the end, the WAL and the dead rows all at once")
        if kind in ("VacuumStmt", "ClusterStmt", "LockStmt") and (
                kind != "VacuumStmt" or any(getattr(o, "defname", "") == "full" for o in (node.options or ()))):
            add(line, "table-rewrite", f"{kind[:-4].upper()} takes an ACCESS EXCLUSIVE lock for its whole run")
        if role == "backfill" and (generated or kind == "UpdateStmt"):  # others: backfill-single-update
            problem = unbounded_batch(node, key_columns)
            if problem:
                add(line, "backfill-unbounded", problem)
    count = len(statements) + len(parsed.errors)
    if role == "backfill" and not generated and not (   # a lone broken statement: syntax-error says it all
            count == 1 and (parsed.errors or type(statements[0][1]).__name__ == "UpdateStmt")):
        add(statements[0][0] if statements else 1, "backfill-single-update",
            f"backfill.sql holds {count} statement(s); it must be exactly one UPDATE")
    return findings


class _BoundingPlaceholders(visitors.Visitor):
    """The batch placeholders a WHERE applies to every row it keeps: those in its top-level AND conditions,
    not inside a subquery or an OR / NOT branch (which do not limit the rows to the batch)."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_SubLink(self, ancestors, node):
        return visitors.Skip

    def visit_BoolExpr(self, ancestors, node):
        return None if node.boolop == enums.BoolExprType.AND_EXPR else visitors.Skip

    def visit_A_Const(self, ancestors, node):
        match = BOUND_LITERAL.match(getattr(node.val, "sval", None) or "")
        if match:
            self.names.add(match.group(1))


def unbounded_batch(node, key_columns: tuple[str, ...] | None) -> str | None:
    """Why a per-batch UPDATE / DELETE / INSERT ... SELECT does not stay inside its key range, or None."""
    where = _row_filter(node)
    if where is False:  # not a row-changing statement: backfill-single-update speaks about it
        return None
    needed = batch_names(key_columns) or _names_used(node)
    found = _BoundingPlaceholders()
    if where is not None:
        found(where)
    missing = sorted(needed - found.names, key=lambda n: (n[:2] != "lo", n))
    if not missing:
        return None
    listed = ", ".join(f"%({n})s" for n in missing)
    if where is None:
        return f"no WHERE: every batch would touch every row (needs {listed})"
    return (f"the WHERE does not bound the batch with {listed} (a placeholder only in SET, a subquery or an "
            f"OR / NOT branch does not limit the rows): every batch would reach rows outside its key range")


def _row_filter(node):
    """The WHERE that picks a statement's rows; None when it has none, False when the statement picks no rows."""
    if isinstance(node, ast.InsertStmt):
        # WITH d AS (DELETE ... WHERE <bounds> RETURNING *) INSERT ... SELECT * FROM d: the CTE picks the rows
        ctes = [c.ctequery for c in (node.withClause.ctes if node.withClause else ())
                if isinstance(c.ctequery, (ast.UpdateStmt, ast.DeleteStmt))]
        node = ctes[0] if ctes else node.selectStmt
    if isinstance(node, (ast.UpdateStmt, ast.DeleteStmt, ast.SelectStmt)):
        return node.whereClause
    return False


class _AllPlaceholders(visitors.Visitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_A_Const(self, ancestors, node):
        match = BOUND_LITERAL.match(getattr(node.val, "sval", None) or "")
        if match:
            self.names.add(match.group(1))


def _names_used(node) -> set[str]:
    """Key unknown: lo and hi, or, when the statement uses the composite form, every lo_i and hi_i up to
    the highest index it mentions."""
    seen = _AllPlaceholders()
    seen(node)
    indexes = [int(m.group(2)) for m in map(BATCH_NAME.match, seen.names) if m and m.group(2)]
    if not indexes:
        return {"lo", "hi"}
    return {f"{bound}_{i}" for bound in ("lo", "hi") for i in range(max(indexes) + 1)}


def _is_destructive(node) -> bool:
    kind = type(node).__name__
    if kind == "DropStmt":
        return getattr(node.removeType, "name", str(node.removeType)) in ("OBJECT_TABLE", "OBJECT_VIEW",
                                                                          "OBJECT_MATERIALIZED_VIEW")
    if kind == "TruncateStmt":
        return True
    if kind == "AlterTableStmt":
        return any(getattr(c.subtype, "name", "") in ("AT_DropColumn",) for c in node.cmds or ())
    return False


def _describe(node) -> str:
    kind = type(node).__name__
    return {"DropStmt": "DROP", "TruncateStmt": "TRUNCATE", "AlterTableStmt": "DROP COLUMN"}.get(kind, kind)


def lint_sql(path: Path, text: str, role: str, pg_version: str, key_columns: tuple[str, ...] | None,
             generated: bool) -> list[Finding]:
    """Every finding of one SQL file's text (batch placeholders already bound as literals)."""
    parsed = parse_statements(text)
    findings = own_rules(path, text, role, key_columns, generated, parsed)
    if parsed.statements and not (role == "backfill" and generated):
        squawked = run_squawk(path, without_broken(text, parsed), pg_version)
        if role in ("cleanup", "down"):  # dropping is what contract and rollback are for
            allowed = DROPS_ALLOWED | (GENERATED_ALLOWED if generated else set())
            squawked = [f for f in squawked if f.rule not in allowed]
        elif generated:
            squawked = [f for f in squawked if f.rule not in GENERATED_EXPAND_ALLOWED]
        findings += squawked
    return findings


def drops_anything(text: str) -> bool:
    """Does this SQL drop a table or view, truncate, or drop a column?"""
    return any(_is_destructive(raw.stmt) for raw in pglast.parse_sql(text)) if text.strip() else False
