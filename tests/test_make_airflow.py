"""Issue 18 §13: `make airflow` uses the database AIRMIGRATE_TARGET_URL names (never recreating it), a free port
when 8080 is taken, and more logins from AIRMIGRATE_AIRFLOW_USERS."""

from __future__ import annotations

import json
import socket

import pytest

from airmigrate.airflow.local import LocalAirflow, extra_users, named_target, pick_port


def test_the_database_named_in_the_url_is_the_target():
    named = named_target({"AIRMIGRATE_TARGET_URL": "postgresql://app@db.internal:5432/shop"})
    assert named.dbname == "shop" and named.host == "db.internal"
    assert named_target({"AIRMIGRATE_TARGET_URL": "postgresql://postgres@127.0.0.1:5432/postgres"}) is None
    assert named_target({}) is None  # the demo database, as before


def test_a_taken_port_gives_a_free_one_unless_one_was_asked_for():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = pick_port({}, default=taken)
        assert port != taken and port > 0
        with pytest.raises(SystemExit, match=f"AIRMIGRATE_AIRFLOW_PORT={taken}"):
            pick_port({"AIRMIGRATE_AIRFLOW_PORT": str(taken)})
    assert pick_port({}, default=taken) == taken  # free again


def test_more_logins_from_the_environment(tmp_path):
    users = extra_users({"AIRMIGRATE_AIRFLOW_USERS": "viewer:viewer, ops:op"})
    assert users == {"viewer": "viewer", "ops": "op"}
    with pytest.raises(SystemExit, match="name:role"):
        extra_users({"AIRMIGRATE_AIRFLOW_USERS": "viewer:superuser"})
    airflow = LocalAirflow(tmp_path, "postgresql://x@h/db", users=users)
    assert airflow.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,viewer:viewer,ops:op"
    airflow._write_password()
    written = json.loads((tmp_path / "simple_auth_manager_passwords.json.generated").read_text())
    assert set(written) == {"admin", "viewer", "ops"} and written["admin"] == airflow.password
    assert len(set(written.values())) == 3
