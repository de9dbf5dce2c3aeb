"""rename_table, rename_index, rename_constraint: a new name without breaking a running application version.

rename_table: the expand renames the table and leaves an updatable view under the old name (``SELECT *`` of one
table: PostgreSQL writes INSERT, UPDATE, DELETE and RETURNING through it to the table, with the table's defaults),
so the release using the old name keeps working beside the one using the new name; the contract drops the view
(after the approval: the old release must be gone). The rollback is the reverse: the table gets its old name back
and a view under the new name keeps the newer release working until the rollback's last step drops it. Each
step is one short transaction under lock_timeout, guarded so a retried or resumed step does nothing twice.

rename_index and rename_constraint rename in the expand (a short lock; no application statement names an index or
a constraint) and rename back on the way down.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airmigrate.engines import sql
from airmigrate.operations.base import NAME, OpContext, OperationModel, Steps, ident, s


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


def swap(ctx: OpContext, table: str, view: str) -> str:
    """The table (still named `view`) becomes `table`, and a view named `view` shows it; nothing when done."""
    q = sql.Literal
    return s("DO $am$ BEGIN IF (SELECT relkind FROM pg_class WHERE oid = to_regclass({old_q})) IN ('r', 'p') THEN "
             "ALTER TABLE {old} RENAME TO {new_name}; CREATE VIEW {old} AS SELECT * FROM {new}; END IF; END $am$",
             old_q=q(ident(ctx.schema, view).as_string(None)), old=ident(ctx.schema, view), new_name=ident(table),
             new=ident(ctx.schema, table))


def drop_view(ctx: OpContext, name: str) -> str:
    return s("DO $am$ BEGIN IF (SELECT relkind FROM pg_class WHERE oid = to_regclass({q})) = 'v' THEN "
             "DROP VIEW {v}; END IF; END $am$", q=sql.Literal(ident(ctx.schema, name).as_string(None)),
             v=ident(ctx.schema, name))


def steps(op, ctx: OpContext) -> Steps:
    if op.op == "rename_table":
        # down: back to the old name, a view under the new one (before the contract the old name's view goes first)
        return Steps(expand=[swap(ctx, op.to, ctx.table)], contract=[drop_view(ctx, ctx.table)],
                     down=[drop_view(ctx, ctx.table), swap(ctx, ctx.table, op.to)],
                     down_contract=[drop_view(ctx, op.to)], destructive=True)
    if op.op == "rename_index":
        def rename(a, b):
            return s("ALTER INDEX IF EXISTS {a} RENAME TO {b}", a=ident(ctx.schema, a), b=ident(b))
        return Steps(expand=[rename(op.name, op.to)], down=[rename(op.to, op.name)])

    def rename_constraint(a, b):
        return s("DO $am$ BEGIN IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass({q}) AND "
                 "conname = {a_q}) THEN ALTER TABLE {t} RENAME CONSTRAINT {a} TO {b}; END IF; END $am$",
                 q=sql.Literal(ctx.qualified.as_string(None)), a_q=sql.Literal(a), t=ctx.qualified, a=ident(a),
                 b=ident(b))
    return Steps(expand=[rename_constraint(op.name, op.to)], down=[rename_constraint(op.to, op.name)])
