"""Where a migration runs: engine, host, port, user, password, database. Built from a URL or an Airflow
connection; the engine (from the URL's scheme or the connection's type) parses and connects, the rest is plain
data. Safe to log only through :meth:`Target.describe` (the password is never in a repr, a log or an error)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit

from airmigrate import engines


@dataclass(frozen=True)
class Target:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    engine: str = engines.DEFAULT

    @classmethod
    def from_url(cls, url: str) -> "Target":
        """A target URL (``postgresql://...``, or a libpq keyword string) parsed by its engine."""
        engine = engines.for_url(url)
        return cls(engine=engine.name, **engine.parse_url(url))

    @classmethod
    def from_airflow_uri(cls, uri: str) -> "Target":
        """An AIRFLOW_CONN_* value read the way Airflow's Connection reads it (a URI with host, login, password
        and schema URL-decoded, or its JSON form), without importing Airflow: the CLI's checks answer before
        Airflow starts."""
        if uri.lstrip().startswith("{"):
            conn = json.loads(uri)
            engine = engines.named(engines.name_for_scheme(conn.get("conn_type") or engines.DEFAULT))
            defaults = engine.default_target()
            return cls(host=conn.get("host") or defaults["host"], port=int(conn.get("port") or defaults["port"]),
                       user=conn.get("login") or defaults["user"], password=conn.get("password") or None,
                       dbname=conn.get("schema") or defaults["dbname"], engine=engine.name)
        parts = urlsplit(uri)
        engine = engines.named(engines.name_for_scheme(parts.scheme or engines.DEFAULT))
        defaults = engine.default_target()
        return cls(host=unquote(parts.hostname or "") or defaults["host"], port=parts.port or defaults["port"],
                   user=unquote(parts.username or "") or defaults["user"],
                   password=unquote(parts.password) if parts.password else None,
                   dbname=unquote(parts.path.lstrip("/")) or defaults["dbname"], engine=engine.name)

    @property
    def scheme(self) -> str:
        return engines.REGISTRY[self.engine].schemes[0]

    def with_dbname(self, dbname: str) -> "Target":
        return replace(self, dbname=dbname)

    def conninfo(self) -> str:
        """The driver's connection string (PostgreSQL: libpq's)."""
        return engines.named(self.engine).conninfo(self)

    def url(self) -> str:
        """<scheme>:// URL (socket directories go into ?host=)."""
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        if self.host.startswith("/"):
            return (f"{self.scheme}://{auth}@/{quote(self.dbname)}?host={quote(self.host, safe='')}"
                    f"&port={self.port}")
        return f"{self.scheme}://{auth}@{self.host}:{self.port}/{quote(self.dbname)}"

    def airflow_uri(self) -> str:
        """AIRFLOW_CONN_* form: a socket directory goes URL-encoded into the host part."""
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        return f"{self.scheme}://{auth}@{quote(self.host, safe='')}:{self.port}/{quote(self.dbname)}"

    def libpq_env(self) -> dict[str, str]:
        """Environment for the engine's client tools (pg_dump): the password travels here, never on a command
        line."""
        return engines.named(self.engine).client_env(self)

    def describe(self) -> str:
        """Safe to log: no password."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


def configured_default_schema(environ: dict[str, str] | None = None) -> str:
    """Where a bare table name lives on the configured target (the engine's ``default_schema``: PostgreSQL's
    public, MySQL's database of the target), so a migration's ``table: users`` names the same table in every
    stage, whichever engine runs it."""
    env = os.environ if environ is None else environ
    uri = env.get("AIRFLOW_CONN_AIRMIGRATE_TARGET")
    if uri:
        target = Target.from_airflow_uri(uri)
    elif env.get("AIRMIGRATE_TARGET_URL"):
        target = Target.from_url(env["AIRMIGRATE_TARGET_URL"])
    else:
        target = Target(engine=engines.DEFAULT, **engines.named(engines.DEFAULT).default_target())
    return engines.named(target.engine).default_schema(target)
