"""What lint and the checks report: a finding (file:line, rule, message, the safe recipe) and the recipes.

At the bottom of the house: the engines' lint rules and the neutral checks both make findings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    "unbatched-delete": "use the delete_rows operation ({op: delete_rows, where: \"<the rows to delete>\"}): key-range "
                        "batches, each deleting its rows and archiving them in one short transaction, VACUUM between "
                        "batches, a rollback that puts them back; or acknowledge the rule for a small table, with the "
                        "row count as the reason",
    "delete-without-archive": "keep archive: table (the default) so the rollback can put the rows back; for data that "
                              "must not be kept, acknowledge this rule with the reason: the backup stage then keeps a "
                              "pg_dump of the table, and the contract waits for an approval",
    "backfill-single-update": "write exactly one UPDATE ... WHERE <key> BETWEEN %(lo)s AND %(hi)s",
    "table-rewrite": "avoid VACUUM FULL / CLUSTER / LOCK TABLE in a migration; use pg_repack off-line if needed",
    "syntax-error": "fix the SQL so PostgreSQL can parse it",
    "backfill-percent": "write a literal % as %% (`id %% 2`, `LIKE 'a%%'`): the database driver reads every % in backfill.sql, "
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


def acknowledge(findings: list[Finding], acknowledged: dict[str, str] | None) -> list[Finding]:
    """The findings in file order, each marked with the migration's written reason where it acknowledges it."""
    acknowledged = acknowledged or {}
    return [Finding(f.file, f.line, f.rule, f.message, f.recipe, acknowledged.get(f.rule))
            for f in sorted(findings, key=lambda f: (f.line, f.rule))]


def unacknowledged(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.acknowledged]


@dataclass(frozen=True)
class Problem:
    """A preflight reference finding (every engine's check makes them): the file, its line or migration.yaml's
    field, what is wrong and the fix."""

    file: Path
    line: int | None
    field: str | None
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{_shown(self.file)}:{self.line}" if self.line else f"{_shown(self.file)}"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.problem}. Fix: {self.fix}"


def _shown(path: Path) -> str:
    """The path relative to the working directory when it is below it (what a user can open)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
