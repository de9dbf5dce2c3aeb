"""What the preflight's reference check asks of a MySQL target today: that the migration's table is there.

The full replay of PostgreSQL's check (every column, index and type each file names, in run order) is not
built for MySQL yet; until it is, this says the one thing it knows for sure rather than claiming "no
problems" for what it did not look at (the preflight still stops on a missing table before any change)."""

from __future__ import annotations

import re

from airmigrate.engines import sql
from airmigrate.engines.mysql import connection, parsing
from airmigrate.engines.mysql.state_names import schema_of
from airmigrate.findings import Problem


def find_problems(conn, migration, resumed: bool) -> list[Problem]:
    """The migration's table must exist in its database (the connection's, unless the spec names one); one that
    create_table makes must not exist yet."""
    schema, _, table = migration.spec.table.rpartition(".")
    if not schema:
        schema = conn.execute("SELECT DATABASE()").fetchone()[0]
    found = conn.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                         (schema, table)).fetchone()
    if any(op.op == "create_table" for op in migration.spec.operations):  # the expand makes it
        return [] if not found or resumed else [Problem(
            migration.spec_path, None, "table", f"table {schema}.{table} already exists on the target",
            "name a new table, or drop the create_table operation")]
    if found:
        return []
    return [Problem(migration.spec_path, None, "table", f"table {schema}.{table} does not exist on the target",
                    "name an existing table, or create it in an earlier migration")]


class NotNullProofs:
    """MySQL has no proof that makes a later NOT NULL free (a validated CHECK does not spare the scan):
    nothing is ever skipped."""

    def skips_scan(self, statement: str) -> bool:
        return False


def table_columns(conn, schema: str, table: str) -> list[str] | None:
    """The columns in order (exact names), None when the table (or view) does not exist."""
    columns = [row[0] for row in conn.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (schema_of(conn, schema), table)).fetchall()]
    return columns or None


def key_check(conn, schema: str, table: str, key: tuple[str, ...]) -> dict | None:
    """What the preflight asks of the migration's table (see Engine.key_check) from information_schema: InnoDB's
    row estimate (TABLE_ROWS), the columns, and the unique keys whose columns are all NOT NULL (PRIMARY first);
    MySQL has no partial or invalid unique index, and an expression part has no COLUMN_NAME (left out)."""
    row = conn.execute("SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'", (schema, table)).fetchone()
    if row is None:
        return None
    columns = table_columns(conn, schema, table) or []
    parts = conn.execute(
        "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE FROM information_schema.STATISTICS s "
        "LEFT JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
        "AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = %s AND s.TABLE_NAME = %s AND s.NON_UNIQUE = 0 "
        "ORDER BY s.INDEX_NAME = 'PRIMARY' DESC, s.INDEX_NAME, s.SEQ_IN_INDEX", (schema, table)).fetchall()
    indexes: dict[str, list] = {}
    for name, column, nullable in parts:
        indexes.setdefault(name, []).append((column, nullable))
    candidates = [[c for c, _ in cols] for cols in indexes.values() if all(c and n == "NO" for c, n in cols)]
    candidates.sort(key=len)  # stable: PRIMARY stays first among keys of its length
    unique = sorted(key) in [sorted(k) for k in candidates]
    return {"estimate": int(row[0]), "columns": columns, "unique": unique, "candidates": candidates}


def column_types(conn, schema: str, table: str) -> dict[str, str]:
    """name -> COLUMN_TYPE (e.g. varchar(64), bigint(20) unsigned) of a table's columns; empty when no table."""
    return dict(conn.execute("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                             "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (schema, table)).fetchall())


def as_written(default: str | None, extra: str | None, mariadb: bool) -> str | None:
    """COLUMN_DEFAULT as a DEFAULT clause takes it back (op_columns.column_definition restates it). MariaDB 10.2.7+
    writes it so (a string quoted, an expression as is, 'NULL'); MySQL 8 gives a literal's bare value and marks an
    expression DEFAULT_GENERATED in EXTRA: quoted, or in parentheses (CURRENT_TIMESTAMP as it is)."""
    if mariadb or default is None:
        return default
    if "DEFAULT_GENERATED" in (extra or "").upper():
        return default if re.fullmatch(r"(?i)current_timestamp(\(\d*\))?", default) else f"({default})"
    return connection.render(sql.Literal(default))


ON_UPDATE = re.compile(r"(?i)\bon update (\S+)")  # in EXTRA: MariaDB's "on update current_timestamp(6)"


def read_table(conn, schema: str, table: str) -> dict | None:
    """The table's definition in airmigrate.structure's shape, from information_schema: columns (type,
    nullability, default, generation, collation, comment), indexes and unique/primary keys with their columns,
    foreign keys referencing it. Privileges, statistics targets and dependents PostgreSQL reports are empty."""
    found = conn.execute("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                         "AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'", (schema, table)).fetchone()
    if found is None:
        return None
    mariadb = getattr(conn, "is_mariadb", True)
    rows = conn.execute(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, GENERATION_EXPRESSION, COLLATION_NAME, "
        "COLUMN_COMMENT, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (schema, table)).fetchall()
    columns = {r[0]: {"type": r[1], "not_null": r[2] == "NO", "default": as_written(r[3], r[7], mariadb),
                      "identity": None, "generated": r[4] or None, "collation": r[5], "comment": r[6] or None,
                      "statistics": None, "owns_sequence": None, "privileges": []} for r in rows}
    # ON UPDATE CURRENT_TIMESTAMP: apart from `columns` (compared by the rollback) like `checks`; split_table's
    # rollback keeps such a column's stamps, its refusals name a moved one
    on_update = {r[0]: stamp.group(1) for r in rows if (stamp := ON_UPDATE.search(r[7] or ""))}
    indexes: dict[str, dict] = {}
    for name, non_unique, column, kind, prefix in conn.execute(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, INDEX_TYPE, SUB_PART FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX", (schema, table)):
        entry = indexes.setdefault(name, {"parts": [], "columns": [], "unique": not non_unique, "kind": kind})
        entry["parts"].append(_key_part(column, prefix, kind))
        entry["columns"].append(column)
    index_info = {name: {"definition": f"{'UNIQUE ' if e['unique'] else ''}{e['kind']} ({', '.join(e['parts'])})",
                         "columns": sorted(c for c in e["columns"] if c in columns),
                         "constraint": name if e["unique"] else None} for name, e in indexes.items()}
    constraints = {name: {"kind": "p" if name == "PRIMARY" else "u", "definition": info["definition"],
                          "columns": [c or "(expression)" for c in indexes[name]["columns"]],
                          "index": info["definition"]}
                   for name, info in index_info.items() if info["constraint"]}
    referenced_by = {f"{r[1]}.{r[0]}": {"definition": f"FOREIGN KEY ({r[3]}) REFERENCES {table} ({r[4]})",
                                        "columns": r[3].split(","), "name": r[0], "table": [r[1], r[2]]}
                     for r in conn.execute(
                         "SELECT CONSTRAINT_NAME, TABLE_SCHEMA, TABLE_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY "
                         "ORDINAL_POSITION), GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION) "
                         "FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_SCHEMA = %s "
                         "AND REFERENCED_TABLE_NAME = %s GROUP BY CONSTRAINT_NAME, TABLE_SCHEMA, TABLE_NAME",
                         (schema, table)).fetchall()}
    return {"schema": schema, "table": table, "comment": found[0] or None, "privileges": [], "columns": columns,
            "constraints": constraints, "indexes": index_info, "triggers": {}, "referenced_by": referenced_by,
            "dependents": _view_dependents(conn, schema, table, list(columns)),
            "checks": _checks(conn, schema, table), "references": _references(conn, schema, table),
            "row_triggers": _row_triggers(conn, schema, table), "on_update": on_update}


def _view_dependents(conn, schema: str, table: str, columns: list[str]) -> dict[str, list[str]]:
    """column -> the views (any database's) that read it, as PostgreSQL's pg_depend names them ("view db.v").
    MySQL keeps no column dependencies: a dropped or renamed column leaves its views broken ("references invalid
    table(s) or column(s)") where PostgreSQL refuses, so the operations' refusals need them found. The server
    stores a view's query with every name quoted and its tables qualified (`db`.`t`): a view naming the table
    and the column's quoted name anywhere counts (conservative: another table's column of the same name counts
    too)."""
    quoted = connection.quote_identifier
    rows = conn.execute("SELECT TABLE_SCHEMA, TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE "
                        "LOCATE(%s, VIEW_DEFINITION) > 0 ORDER BY TABLE_SCHEMA, TABLE_NAME",
                        (f"{quoted(schema)}.{quoted(table)}",)).fetchall()
    found: dict[str, list[str]] = {}
    for view_schema, view, definition in rows:
        for column in columns:
            if quoted(column) in definition:
                found.setdefault(column, []).append(f"view {view_schema}.{view}")
    return found


def _key_part(column: str | None, prefix: int | None, kind: str) -> str:
    """One part of an index's definition: the column, with its prefix length when the index has one (``name(10)``:
    op_columns.index_parts builds it again so); ``(expression)`` for a functional part. A SPATIAL index's
    SUB_PART (MariaDB reports 32 for a geometry's whole value) is no prefix of the user's."""
    if column is None:
        return "(expression)"
    return f"{column}({prefix})" if prefix and kind in ("BTREE", "HASH") else column


def _checks(conn, schema: str, table: str) -> dict[str, dict]:
    """The table's CHECK constraints: name -> clause and the columns it reads. Apart from `constraints` (whose
    definitions the rollback compares) so that only the operations that look for them see them (split_table's
    refusals). MariaDB names a column's own CHECK after the column, so its CHECK_CONSTRAINTS is matched by table
    too (MySQL 8's has no TABLE_NAME: its check names are unique in the database)."""
    same_table = " AND cc.TABLE_NAME = tc.TABLE_NAME" if conn.is_mariadb else ""
    rows = conn.execute(
        "SELECT tc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS tc "
        "JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
        "AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME" + same_table + " WHERE tc.TABLE_SCHEMA = %s "
        "AND tc.TABLE_NAME = %s AND tc.CONSTRAINT_TYPE = 'CHECK' ORDER BY tc.CONSTRAINT_NAME", (schema, table))
    return {name: {"definition": clause, "columns": parsing.columns_read(clause)} for name, clause in rows.fetchall()}


OWN_TRIGGER = re.compile(r"am_[a-z]+_")  # airmigrate's own (operations.base.OpContext.name): not the application's


def _row_triggers(conn, schema: str, table: str) -> dict[str, dict]:
    """The application's triggers that may touch the table: its own, those of the database's other tables whose
    body names it, and those of other databases whose body names both the database and the table; name (``db.name``
    for another database's) -> the database and table it is on, timing, event and body. Apart from `triggers`
    (compared by the rollback, empty here) like `checks`: split_table's refusals read them (a trigger naming a moved
    column breaks once the column is gone). airmigrate's own triggers (``am_<kind>_...``, a resumed run's) are
    left out. Names are found as substrings: conservative (a longer name containing the table's counts too)."""
    rows = conn.execute(
        "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, "
        "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE (TRIGGER_SCHEMA = %s AND (EVENT_OBJECT_TABLE = %s "
        "OR LOCATE(%s, ACTION_STATEMENT) > 0)) OR (TRIGGER_SCHEMA <> %s AND LOCATE(%s, ACTION_STATEMENT) > 0 "
        "AND LOCATE(%s, ACTION_STATEMENT) > 0) ORDER BY TRIGGER_SCHEMA, TRIGGER_NAME",
        (schema, table, table, schema, schema, table)).fetchall()
    return {name if where == schema else f"{where}.{name}": {"schema": where, "table": on, "timing": timing,
                                                             "event": event, "statement": body}
            for where, name, on, timing, event, body in rows if not OWN_TRIGGER.match(name)}


def _references(conn, schema: str, table: str) -> dict[str, dict]:
    """The table's own foreign keys: name -> its columns, what they reference and the actions (MySQL runs no
    trigger for a row a foreign key's action deletes or changes, which split_table's refusals need to know)."""
    rows = conn.execute(
        "SELECT k.CONSTRAINT_NAME, GROUP_CONCAT(k.COLUMN_NAME ORDER BY k.ORDINAL_POSITION), "
        "CONCAT(k.REFERENCED_TABLE_SCHEMA, '.', k.REFERENCED_TABLE_NAME), GROUP_CONCAT(k.REFERENCED_COLUMN_NAME "
        "ORDER BY k.ORDINAL_POSITION), r.DELETE_RULE, r.UPDATE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
        "JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
        "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME WHERE k.TABLE_SCHEMA = %s "
        "AND k.TABLE_NAME = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL GROUP BY k.CONSTRAINT_NAME, "
        "k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, r.DELETE_RULE, r.UPDATE_RULE "
        "ORDER BY k.CONSTRAINT_NAME", (schema, table)).fetchall()
    return {name: {"columns": columns.split(","), "definition": f"FOREIGN KEY ({columns}) REFERENCES {other} "
                   f"({referenced}) ON DELETE {on_delete} ON UPDATE {on_update}", "on_delete": on_delete,
                   "on_update": on_update} for name, columns, other, referenced, on_delete, on_update in rows}


def foreign_keys(conn, schema: str, table: str) -> list[dict]:
    """The foreign keys from and to the table: name, from_table, from_columns, to_table, to_columns."""
    rows = conn.execute(
        "SELECT CONSTRAINT_NAME, CONCAT(TABLE_SCHEMA, '.', TABLE_NAME), GROUP_CONCAT(COLUMN_NAME ORDER BY "
        "ORDINAL_POSITION), CONCAT(REFERENCED_TABLE_SCHEMA, '.', REFERENCED_TABLE_NAME), "
        "GROUP_CONCAT(REFERENCED_COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE REFERENCED_TABLE_NAME IS NOT NULL AND ((TABLE_SCHEMA = %s AND TABLE_NAME = %s) OR "
        "(REFERENCED_TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME = %s)) GROUP BY CONSTRAINT_NAME, TABLE_SCHEMA, "
        "TABLE_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME ORDER BY CONSTRAINT_NAME",
        (schema, table, schema, table)).fetchall()
    return [{"name": r[0], "from_table": r[1], "from_columns": r[2].split(","), "to_table": r[3],
             "to_columns": r[4].split(",")} for r in rows]


def column_comments(conn, schema: str, table: str) -> dict[str, str | None]:
    """name -> comment (None: none; MySQL stores an empty string) of the table's columns."""
    return {name: comment or None for name, comment in conn.execute(
        "SELECT COLUMN_NAME, COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s", (schema, table)).fetchall()}


def comment_column_sql(conn, schema: str, table: str, column: str, text: str) -> str:
    """MySQL has no COMMENT ON: ALTER TABLE ... MODIFY COLUMN with the column's own definition as SHOW CREATE TABLE
    prints it (type, NULL, default, generation...) and the new COMMENT; a comment-only change is a metadata
    change for the server (no table copy)."""
    create = conn.execute(sql.SQL("SHOW CREATE TABLE {}").format(sql.Identifier(schema, table))).fetchone()[1]
    quoted = connection.quote_identifier(column)
    line = next(ln.strip().rstrip(",") for ln in create.splitlines() if ln.strip().startswith(quoted + " "))
    line = re.sub(r" COMMENT '(?:[^'\\]|\\.|'')*'", "", line)
    return (sql.SQL("ALTER TABLE {} MODIFY COLUMN ").format(sql.Identifier(schema, table)).as_string(conn)
            + line + " COMMENT " + connection.literal(text, conn))
