"""deploy/helm/values.yaml for the official Apache Airflow Helm chart (issue 24): valid against the chart's
values schema (an excerpt vendored in deploy/helm/, its source and commit in its $comment), and consistent with
docker-compose.yml: the same image, executor and airmigrate folders, var/ on one claim every pod mounts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from test_compose import services

ROOT = Path(__file__).resolve().parent.parent
HELM = ROOT / "deploy" / "helm"
VAR = "/opt/airmigrate/var"


def values() -> dict:
    return yaml.safe_load((HELM / "values.yaml").read_text())


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((HELM / "values.schema.excerpt.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_values_validate_against_the_chart_schema():
    errors = sorted(validator().iter_errors(values()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_says_where_it_comes_from():
    schema = json.loads((HELM / "values.schema.excerpt.json").read_text())
    assert schema["x-chart"]["repository"] == "apache/airflow"
    assert len(schema["x-chart"]["commit"]) == 40 and schema["x-chart"]["commit"] in schema["$comment"]
    assert schema["additionalProperties"] is False  # never more lenient than the chart


@pytest.mark.parametrize("change", [
    lambda v: v.update(executor="CeleryExecutr"),
    lambda v: v["workers"].update(replicas="two"),
    lambda v: v["secret"][0].pop("secretName"),
    lambda v: v["volumes"][0]["persistentVolumeClaim"].pop("claimName"),
    lambda v: v["volumeMounts"][0].update(mountpath="/x"),
    lambda v: v.update(noSuchKey=True),
])
def test_a_wrong_value_is_refused(change):
    broken = copy.deepcopy(values())
    change(broken)
    assert list(validator().iter_errors(broken))


def test_values_match_the_compose_deployment():
    v, stack = values(), services()
    assert v["executor"] == stack["api-server"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert f"{v['images']['airflow']['repository']}:{v['images']['airflow']['tag']}" == stack["api-server"]["image"]
    assert v["airflowVersion"] == v["defaultAirflowTag"] == v["images"]["airflow"]["tag"]
    assert v["workers"]["replicas"] >= 2
    env = {e["name"]: e["value"] for e in v["env"]}
    compose_env = stack["api-server"]["environment"]
    for name, value in env.items():
        assert compose_env[name] == value, name
    for name in ("AIRMIGRATE_VAR_DIR", "AIRMIGRATE_BACKUP_DIR", "AIRMIGRATE_DATA_DOCS_DIR", "AIRMIGRATE_DOCS_DIR"):
        assert env[name] == VAR or env[name].startswith(VAR + "/"), name
    # the target from a Kubernetes Secret, never a value in the file
    assert {"envName": "AIRFLOW_CONN_AIRMIGRATE_TARGET", "secretName": "airmigrate-target", "secretKey": "uri"} \
        in v["secret"]
    assert "AIRFLOW_CONN_AIRMIGRATE_TARGET" not in env
    # var/ on one shared claim, mounted read-write in every Airflow pod (global volumes/volumeMounts)
    mount = next(m for m in v["volumeMounts"] if m["mountPath"] == VAR)
    volume = next(vol for vol in v["volumes"] if vol["name"] == mount["name"])
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    pvc = yaml.safe_load((HELM / "airmigrate-var-pvc.yaml").read_text())
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every worker and the api-server at once
