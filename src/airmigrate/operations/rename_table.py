"""rename_table, rename_index, rename_constraint: a new name without breaking a running application version.

rename_table: the expand renames the table and leaves an updatable view under the old name (``SELECT *`` of one
table: PostgreSQL writes INSERT, UPDATE, DELETE and RETURNING through it to the table, with the table's defaults),
so the release using the old name keeps working beside the one using the new name; the contract drops the view
(after the approval: the old release must be gone). The rollback is the reverse: the table gets its old name back
and a view under the new name keeps the newer release working until the rollback's last step drops it. Each
step is one short transaction under lock_timeout, guarded so a retried or resumed step does nothing twice.

rename_index and rename_constraint rename in the expand (a short lock; no application statement names an index or
a constraint) and rename back on the way down.

On MySQL (engines/mysql/op_constraints.py) the names swap the other way round, because RENAME TABLE cannot leave a
view behind in the same statement: the expand adds the new name as an updatable view of the table, and the contract
swaps the table in under the new name with one atomic RENAME TABLE. An index there belongs to the migration's
table; MySQL has no RENAME CONSTRAINT (refused at load, with the way around).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate import engines
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps


class RenameTable(OperationModel):
    op: Literal["rename_table"]
    to: str = Field(..., pattern=NAME, description="The table's new name (same schema)")


class RenameIndex(OperationModel):
    op: Literal["rename_index"]
    name: str = Field(..., pattern=NAME, description="The index's name now (in the migration's schema)")
    to: str = Field(..., pattern=NAME)


class RenameConstraint(OperationModel):
    op: Literal["rename_constraint"]
    name: str = Field(..., pattern=NAME, description="The constraint's name now (on the migration's table)")
    to: str = Field(..., pattern=NAME)


def steps(op, ctx: OpContext) -> Steps:
    engine = engines.current()
    if op.op == "rename_table":
        phases = engine.rename_table_sql(ctx.schema, ctx.table, op.to)
        return Steps(expand=phases["expand"], contract=phases["contract"], down=phases["down"],
                     down_contract=phases["down_contract"], destructive=True)
    if op.op == "rename_index":
        def rename(a, b):
            return engine.rename_index_sql(ctx.schema, ctx.table, a, b)
        return Steps(expand=[rename(op.name, op.to)], down=[rename(op.to, op.name)])

    def rename_constraint(a, b):
        return engine.rename_constraint_sql(ctx.schema, ctx.table, a, b)
    return Steps(expand=[rename_constraint(op.name, op.to)], down=[rename_constraint(op.to, op.name)])
