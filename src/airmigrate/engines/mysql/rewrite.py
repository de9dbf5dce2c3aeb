"""What a MySQL statement touches, drops or rewrites, and the re-definitions the operations ask for (an index
or a constraint moved to a replacement column), read and re-rendered through sqlglot's MySQL dialect.

Where MySQL has no equivalent, the answer says what is true rather than pretending: MySQL cannot add a CHECK or
a FOREIGN KEY "NOT VALID" (the server checks every existing row when it adds one; a foreign key is checked
unless ``foreign_key_checks=0``, which airmigrate does not set behind the user's back), so the
``*_not_valid`` re-definitions return the constraint as MySQL will check it.
"""

from __future__ import annotations

from sqlglot import exp

from airmigrate.engines.base import USES
from airmigrate.engines.mysql.parsing import DIALECT, first_word, parse_one, split_statements


def _rename_column(tree: exp.Expression, old: str, new: str) -> exp.Expression:
    """Every column reference and key list entry naming `old` names `new` instead."""
    def rename(node):
        if isinstance(node, exp.Column) and node.name == old:
            return exp.column(new, table=node.table or None, quoted=True)
        if isinstance(node, exp.Identifier) and node.this == old and isinstance(
                node.parent, (exp.ForeignKey, exp.PrimaryKey, exp.UniqueColumnConstraint, exp.Schema)):
            return exp.to_identifier(new, quoted=True)
        return node
    return tree.transform(rename)


def _parsed(statement: str, kind: type) -> exp.Expression:
    tree = parse_one(statement)
    if not isinstance(tree, kind):
        raise ValueError(f"not a statement sqlglot reads as {kind.__name__}: {statement[:120]}")
    return tree


def mirror_index(definition: str, old: str, new: str, name: str, relation: tuple[str, str] | None = None) -> str:
    """A ``CREATE [UNIQUE] INDEX`` on column `new` instead of `old`, named `name` (on `relation` when given).
    Built online by the executor, which writes in the algorithm the server accepts (NOCOPY, LOCK=NONE)."""
    tree = _rename_column(_parsed(definition, exp.Create), old, new)
    index = tree.this
    index.set("this", exp.to_identifier(name, quoted=True))
    if relation:
        index.set("table", exp.table_(relation[1], db=relation[0], quoted=True))
    return tree.sql(DIALECT)


def index_on(definition: str, name: str, table: str) -> str:
    """The index definition renamed and built on another table of the same shape (a probe)."""
    tree = _parsed(definition, exp.Create)
    tree.this.set("this", exp.to_identifier(name, quoted=True))
    tree.this.set("table", exp.table_(table, quoted=True))
    return tree.sql(DIALECT)


def constraint_not_valid(add_constraint: str, old: str, new: str) -> str:
    """``ALTER TABLE t ADD CONSTRAINT c ...`` with column `old` read as `new`. MySQL checks the existing rows
    when it adds the constraint (there is no NOT VALID): see the module's doc."""
    return _rename_column(_parsed(add_constraint, exp.Alter), old, new).sql(DIALECT)


def foreign_key_not_valid(add_constraint: str, referenced_old: str, referenced_new: str) -> str:
    """A foreign key re-pointed at a replacement column of the referenced table; checked over existing rows
    when added (see the module's doc)."""
    tree = _parsed(add_constraint, exp.Alter)
    for reference in tree.find_all(exp.Reference):
        schema = reference.this
        if isinstance(schema, exp.Schema):
            schema.set("expressions", [exp.to_identifier(referenced_new, quoted=True)
                                       if i.this == referenced_old else i for i in schema.expressions])
    return tree.sql(DIALECT)


def drops_anything(text: str) -> bool:
    """Does this SQL drop a table or a column, or truncate a table?"""
    return any(w in ("DROP TABLE", "TRUNCATE", "DROP COLUMN") for w in data_losing_statements(text))


def data_losing_statements(text: str) -> list[str]:
    """What drops or rewrites data a column snapshot cannot bring back, in words."""
    out = []
    for statement in split_statements(text):
        tree, word = parse_one(statement), first_word(statement)
        if isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
            out.append("DROP TABLE")
        elif word in ("TRUNCATE", "DELETE", "UPDATE"):
            out.append(word)
        elif isinstance(tree, exp.Alter):
            for action in tree.args.get("actions") or ():
                if isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
                    out.append("DROP COLUMN")
                elif isinstance(action, exp.ModifyColumn):
                    out.append("MODIFY COLUMN")
    return out


def sql_touched(text: str, schema: str, table: str | None) -> set[tuple[str, str]]:
    """What the SQL changes, as (kind, name); an unqualified table is in `schema` (MySQL: the database)."""
    out: set[tuple[str, str]] = set()

    def rel(node: exp.Table) -> str:
        return f"{node.db or schema}.{node.name}"

    for statement in split_statements(text):
        tree = parse_one(statement)
        if isinstance(tree, exp.Alter) and isinstance(tree.this, exp.Table):
            where = rel(tree.this)
            for action in tree.args.get("actions") or ():
                _action_touches(action, where, schema, out)
        elif isinstance(tree, exp.Create) and isinstance(tree.this, exp.Index):
            index = tree.this
            where = rel(index.args["table"]) if index.args.get("table") else f"{schema}.{table}"
            out.add(("index", f"{where.split('.')[0]}.{index.name}"))
            for column in index.find_all(exp.Column):
                out.add((USES, f"{where}.{column.name}"))
        elif isinstance(tree, exp.Create) and isinstance(tree.this, (exp.Table, exp.Schema)):
            created = tree.this if isinstance(tree.this, exp.Table) else tree.this.this
            out.add(("table", rel(created)))
        elif isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
            for dropped in _dropped(tree):
                if isinstance(dropped, exp.Table):
                    out.add(("table", rel(dropped)))
        elif isinstance(tree, exp.Update) and isinstance(tree.this, exp.Table):
            for assignment in tree.expressions or ():
                if isinstance(assignment.this, exp.Column):
                    out.add(("column", f"{rel(tree.this)}.{assignment.this.name}"))
    return out


def _action_touches(action: exp.Expression, where: str, schema: str, out: set) -> None:
    if isinstance(action, exp.ColumnDef):
        out.add(("column", f"{where}.{action.name}"))
    elif isinstance(action, (exp.ModifyColumn, exp.AlterColumn, exp.RenameColumn)):
        for part in ("this", "to", "rename_from"):   # CHANGE old new: sqlglot keeps `old` in rename_from
            node = action.args.get(part)
            if isinstance(node, (exp.Column, exp.Identifier, exp.ColumnDef)):
                out.add(("column", f"{where}.{node.name}"))
    elif isinstance(action, exp.Drop):
        kind = (action.args.get("kind") or "").upper()
        name = next((d.name for d in _dropped(action)), "")
        if kind == "COLUMN":
            out.add(("column", f"{where}.{name}"))
        elif kind in ("INDEX", "KEY"):
            out.add(("index", f"{where.split('.')[0]}.{name}"))
        elif name:
            out.add(("constraint", f"{where}.{name}"))
    elif isinstance(action, exp.RenameIndex):
        for node in (action.this, action.args.get("to")):
            if node is not None:
                out.add(("index", f"{where.split('.')[0]}.{node.name}"))
    elif isinstance(action, exp.AddConstraint):
        for constraint in action.expressions:
            if constraint.name:
                out.add(("constraint", f"{where}.{constraint.name}"))
            for column in constraint.find_all(exp.Column):
                out.add((USES, f"{where}.{column.name}"))
            for key in constraint.find_all(exp.ForeignKey):
                for ident in key.expressions:
                    out.add((USES, f"{where}.{ident.name}"))
                reference = key.args.get("reference")
                if reference is not None and isinstance(reference.this, exp.Schema):
                    parent = reference.this.this
                    for ident in reference.this.expressions:
                        out.add((USES, f"{parent.db or schema}.{parent.name}.{ident.name}"))
    elif isinstance(action, exp.AlterRename) and isinstance(action.this, exp.Table):
        out.add(("table", where))
        out.add(("table", f"{action.this.db or schema}.{action.this.name}"))


def _dropped(node: exp.Drop) -> list[exp.Expression]:
    """What a DROP names (sqlglot keeps them in ``tables``, whatever their kind)."""
    return list(node.args.get("tables") or ()) or ([node.this] if node.this is not None else [])
