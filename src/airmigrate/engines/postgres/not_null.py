"""Which SET NOT NULL needs no scan: PostgreSQL 12+ skips it when a validated CHECK (col IS NOT NULL) proves it."""

from __future__ import annotations

import pglast

from airmigrate.sqlfiles import bound_placeholders


class NotNullProofs:
    """SET NOT NULL scans the table unless a validated CHECK (col IS NOT NULL) proves it (PostgreSQL 12+): the
    recipe add_column's contract follows. Fed the statements in run order, it tells which SET NOT NULL is free."""

    def __init__(self):
        self.checks: dict[str, str] = {}   # constraint name -> column it proves NOT NULL once validated
        self.validated: set[str] = set()

    def skips_scan(self, statement: str) -> bool:
        node = pglast.parse_sql(bound_placeholders(statement))[0].stmt
        if type(node).__name__ == "RenameStmt" and node.renameType.name == "OBJECT_COLUMN":
            if node.subname in self.validated:  # the proof follows the column (a replacement's swap)
                self.validated = (self.validated - {node.subname}) | {node.newname}
            return False
        if type(node).__name__ != "AlterTableStmt":
            return False
        free = False
        for cmd in node.cmds or ():
            kind = cmd.subtype.name
            if kind == "AT_AddConstraint" and cmd.def_.contype.name == "CONSTR_CHECK":
                expr = cmd.def_.raw_expr
                if type(expr).__name__ == "NullTest" and expr.nulltesttype.name == "IS_NOT_NULL" \
                        and type(expr.arg).__name__ == "ColumnRef":
                    self.checks[cmd.def_.conname] = expr.arg.fields[-1].sval
            elif kind == "AT_ValidateConstraint" and cmd.name in self.checks:
                self.validated.add(self.checks[cmd.name])
            elif kind == "AT_SetNotNull":
                free = cmd.name in self.validated
        return free
