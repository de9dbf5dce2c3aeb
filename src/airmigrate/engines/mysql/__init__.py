"""MySQL 8 and MariaDB 10.11+: PyMySQL for connections, sqlglot's MySQL dialect for SQL text, the server itself
(an empty copy of the table) for which online algorithm an ALTER gets. The only package that imports pymysql or
sqlglot (an import-linter contract in pyproject.toml). In progress: see the README's "MySQL / MariaDB"."""

from airmigrate.engines.mysql.engine import ENGINE

__all__ = ["ENGINE"]
