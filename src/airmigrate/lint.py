"""Lint every SQL file of a migration before anything runs: squawk plus our own pglast rules.

squawk (PyPI ``squawk-cli``) knows PostgreSQL's locking pitfalls; our rules add what only
airmigrate knows: a destructive statement belongs in the contract (cleanup) step, a full-table
UPDATE belongs in a batched backfill, and a backfill is one bounded UPDATE. Each finding
carries file:line, the rule and the safe recipe. A migration may acknowledge a rule with a
written reason (``acknowledge:`` in migration.yaml); anything else refuses the migration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pglast

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
    "backfill-single-update": "write exactly one UPDATE ... WHERE <key> BETWEEN %(lo)s AND %(hi)s",
    "table-rewrite": "avoid VACUUM FULL / CLUSTER / LOCK TABLE in a migration; use pg_repack off-line if needed",
    "syntax-error": "fix the SQL so PostgreSQL can parse it",
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


def statements_with_lines(text: str):
    """(1-based line of the statement's first token, pglast node) per statement."""
    for raw in pglast.parse_sql(text):
        yield _first_code_line(text, raw.stmt_location or 0), raw.stmt


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


def own_rules(path: Path, text: str, role: str) -> list[Finding]:
    """airmigrate's rules; `role` is the file's part: up, down, backfill or cleanup."""
    findings = []
    try:
        statements = list(statements_with_lines(text))
    except pglast.parser.ParseError as exc:
        line, message = parse_error_at(text, exc)
        return [Finding(str(path), line, "syntax-error", message, RECIPES["syntax-error"])]

    def add(line, rule, message):
        findings.append(Finding(str(path), line, rule, message, RECIPES[rule]))

    for line, node in statements:
        kind = type(node).__name__
        if role == "up" and _is_destructive(node):
            add(line, "destructive-in-expand", f"{_describe(node)} in the expand step, before validation")
        if role in ("up", "cleanup") and kind in ("UpdateStmt", "DeleteStmt") and node.whereClause is None:
            add(line, "unbatched-update", f"{kind[:-4].upper()} without WHERE touches every row in one transaction")
        if kind in ("VacuumStmt", "ClusterStmt", "LockStmt") and (
                kind != "VacuumStmt" or any(getattr(o, "defname", "") == "full" for o in (node.options or ()))):
            add(line, "table-rewrite", f"{kind[:-4].upper()} takes an ACCESS EXCLUSIVE lock for its whole run")
    if role == "backfill" and (len(statements) != 1 or type(statements[0][1]).__name__ != "UpdateStmt"):
        add(statements[0][0] if statements else 1, "backfill-single-update",
            f"backfill.sql holds {len(statements)} statement(s); it must be exactly one UPDATE")
    return findings


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
              text: str | None = None, generated: bool = False) -> list[Finding]:
    """All findings of one SQL file, marked with the migration's acknowledgement where it has one."""
    text = bound_placeholders(path.read_text() if text is None else text)
    findings = own_rules(path, text, role)
    if not any(f.rule == "syntax-error" for f in findings):
        squawked = run_squawk(path, text, pg_version)
        if role in ("cleanup", "down"):  # dropping is what contract and rollback are for
            allowed = DROPS_ALLOWED | (GENERATED_ALLOWED if generated else set())
            squawked = [f for f in squawked if f.rule not in allowed]
        findings += squawked
    acknowledged = acknowledged or {}
    return [Finding(f.file, f.line, f.rule, f.message, f.recipe, acknowledged.get(f.rule))
            for f in sorted(findings, key=lambda f: (f.line, f.rule))]


def lint_migration(migration, pg_version: str = "15.0") -> list[Finding]:
    """Every SQL file of a parsed migration."""
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
        findings += lint_file(migration.folder / name, role, pg_version, acknowledged)
    from airmigrate.operations import for_migration

    steps = for_migration(migration)
    for role, statements in (("up", steps.expand), ("cleanup", steps.contract), ("down", steps.down)):
        if statements:
            label = migration.folder / f"migration.yaml (operations, {role})"
            findings += lint_file(label, role, pg_version, acknowledged, text=";\n".join(statements) + ";\n",
                                  generated=True)
    return findings


def unacknowledged(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.acknowledged]

