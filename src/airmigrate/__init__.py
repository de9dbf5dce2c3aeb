"""airmigrate: zero-downtime PostgreSQL migrations that run as Apache Airflow DAGs."""

__version__ = "0.1.0"
