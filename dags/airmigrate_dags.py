"""One DAG and one rollback DAG per folder under migrations/ (AIRMIGRATE_MIGRATIONS_DIR).

Folders that do not parse are reported by airmigrate_errors.py, so they show as an import
error there without keeping the good migrations from loading.
"""

from airmigrate.airflow.dag_factory import build_all

dags, _errors = build_all()
globals().update(dags)
