"""Lint every SQL file of a migration before anything runs: squawk plus our own pglast rules.

squawk (PyPI ``squawk-cli``) knows PostgreSQL's locking pitfalls; our rules add what only
airmigrate knows: a destructive statement belongs in the contract (cleanup) step, a full-table
UPDATE belongs in a batched backfill, and a backfill is one bounded UPDATE. Each finding
carries file:line, the rule and the safe recipe. A migration may acknowledge a rule with a
written reason (``acknowledge:`` in migration.yaml); anything else refuses the migration.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast, enums, visitors
from pglast.parser import ParseError, scan

from airmigrate.errors import SpecError
from airmigrate.spec import bound_placeholders, parse_error_at

# Rules squawk checks that airmigrate already guarantees (timeouts, re-runnability) or that are style.
SQUAWK_EXCLUDED = (
    "require-lock-timeout",         # the executor sets lock_timeout on every statement
    "require-statement-timeout",    # ... and statement_timeout
    "prefer-robust-stmts",          # finished statement groups are recorded and never re-run
    "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
)

DROPS_ALLOWED = {"ban-drop-column", "ban-drop-table", "ban-drop-function", "ban-drop-constraint", "ban-drop-trigger"}
# The generated contract swaps a column only after the sync trigger kept both names equal, and retires
# a dropped table into the airmigrate schema (rename + SET SCHEMA) instead of dropping it.
GENERATED_ALLOWED = {"renaming-column", "renaming-table", "ban-set-schema"}

RECIPES = {
    "backup-none": "use backup: auto (a pg_dump before the destructive step), or acknowledge the rule with the reason "
                   "(e.g. the data is disposable or backed up elsewhere)",
    "require-concurrent-index-creation": "CREATE INDEX CONCURRENTLY (airmigrate runs it outside a transaction)",
    "require-concurrent-index-deletion": "DROP INDEX CONCURRENTLY",
    "adding-not-nullable-field": "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c; "
                                 "SET NOT NULL (uses the valid check, no scan); DROP CONSTRAINT c",
    "constraint-missing-not-valid": "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT in a later statement",
    "adding-foreign-key-constraint": "ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT",
    "changing-column-type": "add a new column, backfill it in batches with a sync trigger, then swap in cleanup",
    "adding-field-with-default": "add the column without a volatile default, then backfill it in batches",
    "ban-drop-column": "drop columns in cleanup.sql (the contract step), after validation and a release "
                       "that no longer reads them",
    "ban-drop-table": "drop tables in cleanup.sql (the contract step)",
    "disallowed-unique-constraint": "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX",
    "renaming-column": "add the new column with a two-way sync trigger, backfill, then drop the old one in cleanup",
    "renaming-table": "create a view under the old name, or migrate readers first",
    "destructive-in-expand": "move DROP / TRUNCATE into cleanup.sql: it runs only after validation passed",
    "unbatched-update": "put the UPDATE in backfill.sql, bounded by %(lo)s and %(hi)s, so it runs in batches",
    "unbatched-delete": "delete in key-range batches, each its own short transaction, with pauses for vacuum: the "
                        "delete_rows operation ({op: delete_rows, where: \"is_obsolete\"}; being built) is that "
                        "recipe; until then acknowledge the rule for a small table, with the row count as the reason",
    "backfill-single-update": "write exactly one UPDATE ... WHERE <key> BETWEEN %(lo)s AND %(hi)s",
    "table-rewrite": "avoid VACUUM FULL / CLUSTER / LOCK TABLE in a migration; use pg_repack off-line if needed",
    "syntax-error": "fix the SQL so PostgreSQL can parse it",
    "backfill-percent": "write a literal % as %% (`id %% 2`, `LIKE 'a%%'`): psycopg reads every % in backfill.sql, "
                        "even in comments and strings; the only placeholders are the batch bounds %(lo)s and %(hi)s",
    "backfill-unbounded": "bound the rows with a top-level AND condition of the WHERE: "
                          "WHERE <key> BETWEEN %(lo)s AND %(hi)s (not only in SET, a subquery or an OR / NOT branch)",
    "empty-expectations": "add at least one expectation that proves the migration's effect, e.g. "
                          '{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "..."}}',
    "invalid-expectations": "fix the suite file's shape: {\"name\": ..., \"expectations\": [{\"type\": ..., "
                            "\"kwargs\": {...}}]}",
}




@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 1-based
    rule: str
    message: str
    recipe: str
    acknowledged: str | None = None  # the written reason, when the migration acknowledges this rule

    def __str__(self) -> str:
        ack = f" [acknowledged: {self.acknowledged}]" if self.acknowledged else ""
        return f"{self.file}:{self.line}: {self.rule}: {self.message}\n    safe recipe: {self.recipe}{ack}"


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


# -- per-batch statements ------------------------------------------------------------------------------

PERCENT = re.compile(r"%(?:%|\(([^)]*)\)(.)|.|$)", re.S)   # how psycopg reads a query (psycopg/_queries.py)
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


def percent_findings(path: Path, raw: str, key_columns: tuple[str, ...] | None) -> list[Finding]:
    """Every `%` psycopg would not read as `%%` or a bound batch placeholder: each batch would fail at run
    time ("only '%s', '%b', '%t' are allowed as placeholders" or a missing key), however the SQL parses."""
    names, findings = batch_names(key_columns), []
    for match in PERCENT.finditer(raw):
        name, fmt = match.group(1), match.group(2)
        if match.group(0) == "%%" or (name is not None and fmt in ("s", "b", "t") and (
                name in names if names is not None else BATCH_NAME.match(name))):
            continue
        line = raw.count("\n", 0, match.start()) + 1
        findings.append(Finding(str(path), line, "backfill-percent",
                                f"`{match.group(0).strip() or '%'}` in `{raw.splitlines()[line - 1].strip()[:80]}` "
                                f"is neither %% nor a batch placeholder: psycopg rejects it and every batch fails",
                                RECIPES["backfill-percent"]))
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
        node = node.selectStmt
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


def lint_file(path: Path, role: str, pg_version: str = "15.0", acknowledged: dict[str, str] | None = None,
              text: str | None = None, generated: bool = False,
              key_columns: tuple[str, ...] | None = None) -> list[Finding]:
    """All findings of one SQL file, marked with the migration's acknowledgement where it has one.
    `key_columns` names the batching key (None: unknown, any lo/hi placeholder form is accepted)."""
    raw = path.read_text() if text is None else text
    text = bound_placeholders(raw)
    parsed = parse_statements(text)
    findings = own_rules(path, text, role, key_columns, generated, parsed)
    if role == "backfill" and not generated:  # generated statements get their % doubled when they run
        findings += percent_findings(path, raw, key_columns)
    if parsed.statements and not (role == "backfill" and generated):
        squawked = run_squawk(path, without_broken(text, parsed), pg_version)
        if role in ("cleanup", "down"):  # dropping is what contract and rollback are for
            allowed = DROPS_ALLOWED | (GENERATED_ALLOWED if generated else set())
            squawked = [f for f in squawked if f.rule not in allowed]
        findings += squawked
    return _acknowledge(findings, acknowledged)


def _acknowledge(findings: list[Finding], acknowledged: dict[str, str] | None) -> list[Finding]:
    acknowledged = acknowledged or {}
    return [Finding(f.file, f.line, f.rule, f.message, f.recipe, acknowledged.get(f.rule))
            for f in sorted(findings, key=lambda f: (f.line, f.rule))]


def lint_suite(path: Path) -> list[Finding]:
    """A suite that proves nothing: with no expectations the validate stage passes whatever the data is."""
    from airmigrate.validation import load_suite_file  # GX itself is imported only when a suite runs

    try:
        suite = load_suite_file(path)
    except SpecError as exc:
        return [Finding(str(path), 1, "invalid-expectations", f"{exc.field}: {exc.problem}", exc.fix)]
    if suite["expectations"]:
        return []
    text = path.read_text()
    where = text.find('"expectations"')
    return [Finding(str(path), text.count("\n", 0, max(where, 0)) + 1, "empty-expectations",
                    "the suite has no expectations: validation would pass without checking anything",
                    RECIPES["empty-expectations"])]


def lint_migration(migration, pg_version: str = "15.0") -> list[Finding]:
    """Every SQL file of a parsed migration, the SQL its operations generate, and its expectation suite."""
    spec = migration.spec
    acknowledged = {a.rule: a.reason for a in getattr(spec, "acknowledge", ()) or ()}
    files = [(name, role) for name, role in ((spec.up, "up"), (spec.down, "down"))
             if name or (migration.folder / f"{role}.sql").is_file()]
    files = [(name or f"{role}.sql", role) for name, role in files]
    if spec.cleanup:
        files.append((spec.cleanup, "cleanup"))
    if spec.backfill and spec.backfill.sql:
        files.append((spec.backfill.sql, "backfill"))
    findings = []
    for name, role in files:
        findings += lint_file(migration.folder / name, role, pg_version, acknowledged, key_columns=spec.key_columns)
    from airmigrate.operations import for_migration

    steps = for_migration(migration)
    phases = (("up", "up", steps.expand), ("backfill", "backfill", steps.backfill),
              ("cleanup", "cleanup", steps.contract), ("down", "down", steps.down),
              # the rollback's per-batch statements run through the same batch engine: same bounds rule
              ("down backfill", "backfill", getattr(steps, "down_backfill", [])))
    for phase, role, statements in phases:
        if statements:
            label = migration.folder / f"migration.yaml (operations, {phase})"
            findings += lint_file(label, role, pg_version, acknowledged, text=";\n".join(statements) + ";\n",
                                  generated=True, key_columns=spec.key_columns)
    if getattr(migration, "expectations_file", None):
        findings += _acknowledge(lint_suite(migration.expectations_file), acknowledged)
    findings += _acknowledge(backup_findings(migration), acknowledged)
    return findings


def backup_findings(migration) -> list[Finding]:
    """`backup: none` on a migration that drops or rewrites data: nothing to restore from if it goes wrong."""
    from airmigrate.stages.backup_policy import destructive_statements

    if migration.spec.backup != "none" or not (destructive := destructive_statements(migration)):
        return []
    path = migration.folder / "migration.yaml"
    text = path.read_text() if path.is_file() else ""
    line = next((i for i, row in enumerate(text.splitlines(), 1) if row.startswith("backup:")), 1)
    return [Finding(str(path), line, "backup-none", f"backup: none, but the migration {'; '.join(destructive)}",
                    RECIPES["backup-none"])]


def unacknowledged(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.acknowledged]

