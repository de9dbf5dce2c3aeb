"""PostgreSQL: psycopg 3 for connections, pglast (PostgreSQL's own parser) for SQL text, pg_dump for backups.
The only package that imports psycopg or pglast (an import-linter contract in pyproject.toml)."""

from airmigrate.engines.postgres.engine import ENGINE

__all__ = ["ENGINE"]
