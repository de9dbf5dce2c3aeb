"""`python -m airmigrate.deploy_check`: the first thing docker-compose.yml's airflow-init runs (issue 18 §13).
It refuses to start the stack with the defaults written in the file (passwords, Redis's too, the JWT secret, no
Fernet key, the laptop's own target-db instead of AIRFLOW_CONN_AIRMIGRATE_TARGET) unless the `laptop` profile is
asked for (COMPOSE_PROFILES=laptop): a default anyone can read in the repository is no secret on a shared machine.
Exit 0 when fine, 1 with the names to set."""

from __future__ import annotations

import os
import sys

# the values docker-compose.yml falls back to when the variable is not set
# (AIRFLOW_CONN_AIRMIGRATE_TARGET unset means the laptop profile's own target-db, with its password in the file)
DEFAULTS = {"AIRFLOW_ADMIN_PASSWORD": "admin", "AIRFLOW_JWT_SECRET": "change-me-airmigrate-jwt-secret",
            "METADATA_DB_PASSWORD": "airflow", "REDIS_PASSWORD": "airmigrate-redis",
            "AIRFLOW_CONN_AIRMIGRATE_TARGET": "", "AIRFLOW_FERNET_KEY": ""}


def defaults_in_use(env: dict[str, str]) -> list[str]:
    """The settings still at the file's default (as the containers see them: AIRMIGRATE_CHECK_<name>)."""
    return [name for name, default in DEFAULTS.items() if env.get(f"AIRMIGRATE_CHECK_{name}", default) == default]


def laptop(env: dict[str, str]) -> bool:
    return "laptop" in {p.strip() for p in env.get("AIRMIGRATE_COMPOSE_PROFILES", "").split(",")}


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    weak = defaults_in_use(env)
    if not weak or laptop(env):
        if weak:
            print(f"laptop profile: running with the file's defaults for {', '.join(weak)}", file=sys.stderr)
        return 0
    print(f"refusing to start with the defaults of docker-compose.yml for {', '.join(weak)}: set them (e.g. in "
          ".env next to docker-compose.yml, from .env.example; AIRFLOW_FERNET_KEY from `python -c \"from "
          "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`), or on your own machine only "
          "start with "
          "COMPOSE_PROFILES=laptop", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
