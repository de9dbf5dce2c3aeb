"""Lint every SQL file of a migration before anything runs: the engine's rules plus the neutral ones.

The engine (PostgreSQL: squawk and our rules over its parser's tree, ``engines/postgres/lint_rules.py``) knows its locking
pitfalls and where a statement belongs; here: the batch placeholders every driver reads, the expectation suite,
the backup policy, and the acknowledgements. Each finding carries file:line, the rule and the safe recipe. A
migration may acknowledge a rule with a written reason (``acknowledge:`` in migration.yaml); anything else
refuses the migration.
"""

from __future__ import annotations

from pathlib import Path

from airmigrate import engines
from airmigrate.backup_policy import destructive_statements
from airmigrate.engines.base import ONLINE
from airmigrate.errors import SpecError
from airmigrate.findings import RECIPES, Finding, acknowledge as _acknowledge, unacknowledged  # noqa: F401 (API)
from airmigrate.operations import for_migration
from airmigrate.sqlfiles import BATCH_NAME, PERCENT, batch_names, bound_placeholders
from airmigrate.validation.suites import load_suite_file


def percent_findings(path: Path, raw: str, key_columns: tuple[str, ...] | None) -> list[Finding]:
    """Every `%` the driver would not read as `%%` or a bound batch placeholder: each batch would fail at run
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
                                f"is neither %% nor a batch placeholder: the driver rejects it and every batch fails",
                                RECIPES["backfill-percent"]))
    return findings


def lint_file(path: Path, role: str, pg_version: str = "15.0", acknowledged: dict[str, str] | None = None,
              text: str | None = None, generated: bool = False,
              key_columns: tuple[str, ...] | None = None) -> list[Finding]:
    """All findings of one SQL file, marked with the migration's acknowledgement where it has one.
    `key_columns` names the batching key (None: unknown, any lo/hi placeholder form is accepted)."""
    raw = path.read_text() if text is None else text
    findings = engines.current().lint_sql(path, bound_placeholders(raw), role, pg_version, key_columns, generated)
    if role == "backfill" and not generated:  # generated statements get their % doubled when they run
        findings += percent_findings(path, raw, key_columns)
    return _acknowledge(findings, acknowledged)


def drops_anything(text: str) -> bool:
    """Does this SQL drop a table or view, truncate, or drop a column (in the engine's reading)?"""
    return engines.current().drops_anything(text)


def lint_suite(path: Path) -> list[Finding]:
    """A suite that proves nothing: with no expectations the validate stage passes whatever the data is."""
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
    executor = getattr(spec, "executor", ONLINE)
    if executor != ONLINE:  # the table copy the rule warns about is what the executor does online
        engine = engines.current()
        acknowledged.update({rule: f"executor: {executor} runs it online" for rule in engine.executor_rules
                             if rule not in acknowledged and executor in engine.executors})
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
    findings += _acknowledge(backup_findings(migration) + archive_findings(migration), acknowledged)
    return findings


def archive_findings(migration) -> list[Finding]:
    """delete_rows with `archive: none`: the rows are gone for good (only the backup's pg_dump has them)."""
    path = migration.folder / "migration.yaml"
    text = path.read_text() if path.is_file() else ""
    line = next((i for i, row in enumerate(text.splitlines(), 1) if "delete_rows" in row), 1)
    return [Finding(str(path), line, "delete-without-archive", f"operations[{i}]: delete_rows with archive: none "
                    "deletes rows nothing but a pg_dump keeps; the rollback cannot put them back",
                    RECIPES["delete-without-archive"])
            for i, op in enumerate(migration.spec.operations) if op.op == "delete_rows" and op.archive == "none"]


def backup_findings(migration) -> list[Finding]:
    """`backup: none` on a migration that drops or rewrites data: nothing to restore from if it goes wrong."""
    if migration.spec.backup != "none" or not (destructive := destructive_statements(migration)):
        return []
    path = migration.folder / "migration.yaml"
    text = path.read_text() if path.is_file() else ""
    line = next((i for i, row in enumerate(text.splitlines(), 1) if row.startswith("backup:")), 1)
    return [Finding(str(path), line, "backup-none", f"backup: none, but the migration {'; '.join(destructive)}",
                    RECIPES["backup-none"])]
