"""What the preflight's reference check asks of a MySQL target today: that the migration's table is there.

The full replay of PostgreSQL's check (every column, index and type each file names, in run order) is not
built for MySQL yet; until it is, this says the one thing it knows for sure rather than claiming "no
problems" for what it did not look at (the preflight still stops on a missing table before any change)."""

from __future__ import annotations


from airmigrate.findings import Problem


def find_problems(conn, migration, resumed: bool) -> list[Problem]:
    """The migration's table must exist in its database (the connection's, unless the spec names one)."""
    schema, _, table = migration.spec.table.rpartition(".")
    if not schema:
        schema = conn.execute("SELECT DATABASE()").fetchone()[0]
    found = conn.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                         (schema, table)).fetchone()
    if found:
        return []
    return [Problem(migration.spec_path, None, "table", f"table {schema}.{table} does not exist on the target",
                    "name an existing table, or create it in an earlier migration")]


class NotNullProofs:
    """MySQL has no proof that makes a later NOT NULL free (a validated CHECK does not spare the scan):
    nothing is ever skipped."""

    def skips_scan(self, statement: str) -> bool:
        return False
