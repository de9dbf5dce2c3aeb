"""Shows every migration folder that does not parse as an Airflow import error (with file, field and fix)."""

from airmigrate.airflow.dag_factory import raise_spec_errors

raise_spec_errors()
