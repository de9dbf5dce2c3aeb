"""Registers airmigrate's status page (/airmigrate) with Airflow; the code lives in the package."""

from airmigrate.airflow.plugin import AirmigratePlugin

__all__ = ["AirmigratePlugin"]
