"""Great Expectations, the only module that imports it (importing GX costs ~5 s: never at DAG parse).

A suite file in ``expectations/`` is GX 1.x's own ExpectationSuite JSON. It runs through GX's
PostgreSQL datasource on a whole-table batch, so every expectation executes as SQL aggregates in
the database (no table pull), and Data Docs are written to a local folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from airmigrate.errors import SpecError

log = logging.getLogger(__name__)
URL_VARIABLE = "AIRMIGRATE_GX_CONNECTION_URL"


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)
    data_docs_index: Path | None = None


def load_suite_file(path: Path) -> dict:
    """Read a suite file and check its shape, naming the file and the field on error."""
    path = Path(path)
    try:
        suite = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SpecError(path, f"line {exc.lineno}", f"not valid JSON ({exc.msg})", "fix the JSON syntax") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SpecError(path, "expectations", "missing or not a list",
                        'write {"name": "...", "expectations": [{"type": ..., "kwargs": {...}}]}')
    for i, expectation in enumerate(suite["expectations"]):
        if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str):
            raise SpecError(path, f"expectations[{i}].type", "missing",
                            "name the expectation, e.g. expect_column_values_to_not_be_null")
        if not isinstance(expectation.get("kwargs", {}), dict):
            raise SpecError(path, f"expectations[{i}].kwargs", "not an object", 'write "kwargs": {"column": ...}')
    suite.setdefault("name", path.stem)
    return suite


def sqlalchemy_url(url: str) -> str:
    """postgresql://... -> postgresql+psycopg://... (psycopg 3 driver)."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def run_suite(url: str, table: str, suite_path: Path, data_docs_dir: Path, schema: str = "public") -> ValidationOutcome:
    """Validate the table with the suite; Data Docs go to data_docs_dir/index.html."""
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite_dict = load_suite_file(suite_path)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    data_docs_dir = Path(data_docs_dir)
    data_docs_dir.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(site_name="airmigrate", site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(data_docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    # A ${VAR} reference: GX resolves it when connecting, so the credentials stay out of its config and
    # Data Docs, and socket URLs (no host part) pass GX's URL check.
    os.environ[URL_VARIABLE] = sqlalchemy_url(url)
    source = context.data_sources.add_postgres("target", connection_string="${" + URL_VARIABLE + "}")
    batch = source.add_table_asset(table, table_name=table, schema_name=schema).add_batch_definition_whole_table(
        "whole_table")
    try:
        suite = context.suites.add(ExpectationSuite(name=suite_dict["name"],
                                                    expectations=suite_dict["expectations"]))
    except Exception as exc:  # GX rejects unknown expectation types or kwargs
        raise SpecError(suite_path, "expectations", f"Great Expectations refused the suite ({exc})",
                        "use expectation types and kwargs of Great Expectations 1.x") from None
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="migration", data=batch,
                                                                            suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="airmigrate", validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["airmigrate"])]))
    result = checkpoint.run()
    results = [r for run in result.run_results.values() for r in run.results]
    index = data_docs_dir / "index.html"
    return ValidationOutcome(success=bool(result.success), evaluated=len(results),
                             failed=[describe_failure(r) for r in results if not r.success],
                             data_docs_index=index if index.exists() else None)


def describe_failure(result) -> str:
    """One line a person can act on: the expectation, its column/query, and what was found."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    what = (getattr(config, "description", None) or kwargs.get("description") or kwargs.get("column")
            or kwargs.get("unexpected_rows_query") or kwargs)
    found = result.result or {}
    if found.get("unexpected_count") is not None:
        detail = f"{found['unexpected_count']:,} unexpected rows ({found.get('unexpected_percent') or 0:.2f}%)"
        sample = found.get("partial_unexpected_list")
        if sample:
            detail += f", e.g. {sample[:3]}"
    elif found.get("observed_value") is not None:
        detail = f"observed {found['observed_value']}"
    else:
        detail = _exception_message(result.exception_info) or "failed"
    return f"{config.type} [{what}]: {detail}"


def _exception_message(info) -> str | None:
    if isinstance(info, dict):
        if info.get("exception_message"):
            return str(info["exception_message"]).splitlines()[0]
        for value in info.values():
            found = _exception_message(value)
            if found:
                return found
    return None
