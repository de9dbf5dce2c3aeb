"""Which steps wait for a human: the destructive contract, and a rollback that drops what the migration
created. Pure spec logic (no Airflow), for the DAGs, the CLI and the lifecycle checks alike."""

from __future__ import annotations

from airmigrate import operations
from airmigrate.lint import drops_anything
from airmigrate.spec import Migration


def needs_approval(migration: Migration) -> bool:
    """spec.approval when set; otherwise on when the contract drops anything (operations or cleanup.sql)."""
    if migration.spec.approval is not None:
        return migration.spec.approval
    if operations.for_migration(migration).destructive:
        return True
    return drops_anything(migration.cleanup_sql or "")


def needs_rollback_approval(migration: Migration) -> bool:
    """The rollback drops a column or a table (what the migration created, or down.sql's DROPs): the same
    human gate as a destructive contract. spec.approval: false turns both off."""
    if migration.spec.approval is not None:
        return migration.spec.approval
    steps = operations.for_migration(migration)  # no target: the longer (after-contract) path
    statements = [*steps.down, *steps.down_contract, migration.down_sql or ""]
    return any(drops_anything(text) for text in statements)
