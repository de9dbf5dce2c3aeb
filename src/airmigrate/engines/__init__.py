"""The database engines and how one is chosen.

An engine is a package in this folder whose ``ENGINE`` object implements :class:`airmigrate.engines.base.Engine`;
it is registered here with one line naming its URL schemes, Airflow connection types and driver package. The
engine of a run comes from the target's URL or Airflow connection type (:func:`for_url`); the engine of a
connection from its driver (:func:`of`); with neither, the configured target's (:func:`current`). Engines are
imported when first asked for, so a missing optional driver (PyMySQL) only matters to its own targets.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the interface, for annotations only (base imports nothing from here)
    from airmigrate.engines.base import Engine


@dataclass(frozen=True)
class Registration:
    name: str
    module: str
    schemes: tuple[str, ...]  # URL schemes and Airflow connection types
    drivers: tuple[str, ...] = ()  # top-level packages of connection objects it did not make (its own: by class)


REGISTRY: dict[str, Registration] = {}
DEFAULT = "postgresql"


def register(registration: Registration) -> None:
    REGISTRY[registration.name] = registration


register(Registration("postgresql", "airmigrate.engines.postgres", ("postgresql", "postgres", "pgsql")))
register(Registration("mysql", "airmigrate.engines.mysql", ("mysql", "mariadb"), ("pymysql",)))


def named(name: str) -> "Engine":
    """The engine registered under `name` (imported on first use: a plugin, not an import dodging a circle)."""
    try:
        registration = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown database engine {name!r}: known are {', '.join(sorted(REGISTRY))}") from None
    return importlib.import_module(registration.module).ENGINE


def name_for_scheme(scheme: str) -> str:
    """The engine's name for a URL scheme or an Airflow connection type (a SQLAlchemy ``name+driver`` counts)."""
    base = scheme.lower().split("+", 1)[0]
    for registration in REGISTRY.values():
        if base in registration.schemes:
            return registration.name
    raise ValueError(f"no database engine for {scheme!r} URLs or connections: known schemes are "
                     + ", ".join(sorted(s for r in REGISTRY.values() for s in r.schemes)))


def for_url(url: str) -> "Engine":
    """The engine of a target URL; a libpq keyword string (``host=... dbname=...``) is PostgreSQL's."""
    return named(name_for_scheme(url.split("://", 1)[0]) if "://" in url else DEFAULT)


def configured_name(environ: dict[str, str] | None = None) -> str:
    """The engine of the configured target: Airflow's ``AIRFLOW_CONN_AIRMIGRATE_TARGET`` (URI or JSON form),
    else ``AIRMIGRATE_TARGET_URL``, else PostgreSQL."""
    env = os.environ if environ is None else environ
    uri = env.get("AIRFLOW_CONN_AIRMIGRATE_TARGET") or env.get("AIRMIGRATE_TARGET_URL") or ""
    if uri.lstrip().startswith("{"):
        scheme = str(json.loads(uri).get("conn_type") or DEFAULT)
    elif "://" in uri:
        scheme = uri.split("://", 1)[0]
    else:
        return DEFAULT
    return name_for_scheme(scheme)


def current() -> "Engine":
    return named(configured_name())


def of(context: Any = None) -> "Engine":
    """The engine of a connection or cursor (its class is the engine's, or of a driver it names), else the
    configured target's."""
    if context is None:
        return current()
    driver = type(context).__module__.split(".", 1)[0]
    for registration in REGISTRY.values():
        if driver in registration.drivers or type(context).__module__.startswith(registration.module):
            return named(registration.name)
    return current()
