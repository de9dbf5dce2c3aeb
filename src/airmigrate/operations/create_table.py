"""create_table: the migration's `table`, created in the expand with its columns, primary key (the migration's
`key` by default), NOT NULL columns and CHECK constraints; nothing to backfill or contract.

The rollback drops it when it is empty; a table that holds rows by then (the new release wrote into it) is not
dropped but retired into the airmigrate schema (MySQL: database), like drop_table, so no row is lost (drop it by hand once the
rollback is proven)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from airmigrate import engines
from airmigrate.engines import sql
from airmigrate.operations.base import NAME_RE, OpContext, OperationModel, Steps, check_expression, check_type, ident, s


class CreateTable(OperationModel):
    op: Literal["create_table"]
    columns: dict[str, str] = Field(..., min_length=1, description="column: type, in order")
    primary_key: list[str] = Field(default_factory=list, description="default: the migration's `key`")
    not_null: list[str] = Field(default_factory=list, description="columns that must be set (the key always is)")
    checks: dict[str, str] = Field(default_factory=dict, description="constraint name: boolean expression")

    @field_validator("columns")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            if not NAME_RE.match(column):
                raise ValueError(f"columns: '{column}' is not a plain column name")
        return {column: check_type(typename) for column, typename in value.items()}

    @field_validator("checks")
    @classmethod
    def _checks(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"checks: '{name}' is not a plain constraint name")
        return {name: check_expression(expression) for name, expression in value.items()}

    @model_validator(mode="after")
    def _known_columns(self):
        for field in ("primary_key", "not_null"):
            unknown = [c for c in getattr(self, field) if c not in self.columns]
            if unknown:
                raise ValueError(f"{field}: {', '.join(unknown)} not in `columns` ({', '.join(self.columns)})")
        return self


def retired_name(ctx: OpContext) -> str:
    return f"created_{ctx.migration_id}_{ctx.table}"[:63]


def steps(op: CreateTable, ctx: OpContext) -> Steps:
    primary = op.primary_key or [ctx.key]
    parts = [sql.SQL("{} " + typename + (" NOT NULL" if name in op.not_null or name in primary else "")).format(
        ident(name)) for name, typename in op.columns.items()]
    parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(ident, primary))))
    parts += [sql.SQL("CONSTRAINT {} CHECK (" + expression + ")").format(ident(name))
              for name, expression in op.checks.items()]
    expand = [s("CREATE TABLE IF NOT EXISTS {t} ({parts})", t=ctx.qualified, parts=sql.SQL(", ").join(parts))]
    down = [engines.current().drop_created_table_sql(ctx.schema, ctx.table, retired_name(ctx))]
    return Steps(expand=expand, down=down)
