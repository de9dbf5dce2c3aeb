"""Great Expectations, the only module that imports it (importing GX costs ~5 s: never at DAG parse).

A suite file in ``expectations/`` is GX 1.x's own ExpectationSuite JSON. It runs through the engine's GX
datasource (GX's PostgreSQL one; its generic SQL one over ``mysql+pymysql://`` for MySQL) on a whole-table batch, so every expectation executes as SQL aggregates in
the database (no table pull), and Data Docs are written to a local folder.

Names are case-sensitive, as in PostgreSQL with quoted identifiers: the batch is a query asset over
``SELECT * FROM "Schema"."Table"`` built with airmigrate.engines.sql (a GX table asset lower-cases unquoted
schema and table names, so ``AppData.UserAccounts`` would read ``appdata.useraccounts``), and the
columns an expectation names are checked against the table's own, exactly (GX matches column names
case-insensitively and can pick ``email`` for ``Email``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from airmigrate import db, engines
from airmigrate.datadocs_offline import make_offline
from airmigrate.engines import sql
from airmigrate.errors import SpecError, ValidationFailed
from airmigrate.validation.suites import load_suite_file  # noqa: F401 (the package's API)

log = logging.getLogger(__name__)
URL_VARIABLE = "AIRMIGRATE_GX_CONNECTION_URL"
COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    evaluated: int
    failed: list[str] = field(default_factory=list)
    data_docs_index: Path | None = None


def sqlalchemy_url(url: str) -> str:
    """A target URL in SQLAlchemy's form, with the engine's driver (GX reads the table through SQLAlchemy)."""
    return engines.for_url(url).sqlalchemy_url(url)


def run_suite(url: str, table: str, suite_path: Path, data_docs_dir: Path, schema: str | None = None
              ) -> ValidationOutcome:
    """Validate schema.table (exact, case-sensitive names; no schema: the engine's default, PostgreSQL's public,
    MySQL's database) with the suite; Data Docs go to data_docs_dir/index.html.

    Every expectation in the file is evaluated or reported failed: an outcome never passes with fewer results
    than the suite has expectations.
    """
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    suite_path = Path(suite_path)
    suite_dict = load_suite_file(suite_path)
    expectations = []
    for i, expectation in enumerate(suite_dict["expectations"]):
        try:  # one by one: ExpectationSuite(expectations=[...]) logs and drops what it cannot build
            expectations.append(ExpectationConfiguration(**expectation).to_domain_obj())
        except Exception as exc:  # unknown type, missing or wrong kwargs
            raise SpecError(suite_path, f"expectations[{i}]", f"Great Expectations refused it ({_one_line(exc)})",
                            "use the expectation types and kwargs of Great Expectations 1.x") from None
    if schema is None:
        target = db.Target.from_url(url)
        schema = engines.named(target.engine).default_schema(target)
    query, qualified, columns = _table_query(url, schema, table)
    checked, failed = [], []
    for expectation in expectations:
        problem = _column_problem(expectation, columns, qualified)
        if problem:
            failed.append(problem)
        else:
            checked.append(expectation)

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
    add_source = getattr(context.data_sources, f"add_{engines.for_url(url).gx_source}")
    source = add_source("target", connection_string="${" + URL_VARIABLE + "}")
    batch = source.add_query_asset(qualified, query=query).add_batch_definition_whole_table("whole_table")
    suite = context.suites.add(ExpectationSuite(name=suite_dict["name"], expectations=checked))
    if len(suite.expectations) != len(checked):
        raise SpecError(suite_path, "expectations", f"Great Expectations kept {len(suite.expectations)} of "
                        f"{len(checked)} expectations",
                        "use the expectation types and kwargs of Great Expectations 1.x")
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="migration", data=batch,
                                                                            suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="airmigrate", validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["airmigrate"])]))
    result = checkpoint.run()
    results = [r for run in result.run_results.values() for r in run.results]
    failed += [describe_failure(r) for r in results if not r.success]
    if len(results) != len(checked):
        failed.append(f"Great Expectations evaluated {len(results)} of the {len(checked)} expectations it was given "
                      f"({len(suite_dict['expectations'])} in {suite_path.name}): the rest did not run")
    make_offline(data_docs_dir)  # GX's pages load ~10 CDN assets: offline (where databases live) they would not
    index = data_docs_dir / "index.html"
    return ValidationOutcome(success=bool(result.success) and not failed,
                             evaluated=len(results) + len(expectations) - len(checked), failed=failed,
                             data_docs_index=index if index.exists() else None)


def _table_query(url: str, schema: str, table: str) -> tuple[str, str, list[str]]:
    """(SELECT * FROM "schema"."table", its quoted name, its columns in order); the names are used exactly."""
    target = db.Target.from_url(url)
    engine = engines.named(target.engine)
    with db.connect(target, autocommit=True) as conn:
        name = sql.Identifier(schema, table)
        qualified = name.as_string(conn)
        columns = engine.table_columns(conn, schema, table)
        if columns is None:
            raise ValidationFailed(f"table {qualified} does not exist (names are case-sensitive): nothing to "
                                   "validate. Check `table:` in migration.yaml against the database")
        return sql.SQL("SELECT * FROM {}").format(name).as_string(conn), qualified, columns


def _column_problem(expectation, columns: list[str], qualified: str) -> str | None:
    """Why GX cannot validate the columns this expectation names exactly, or None.

    GX resolves a column name case-insensitively against the table's columns (first match wins), so a name
    that is not exactly a column, or one that differs from another column only in case, would silently
    validate some other column.
    """
    kwargs = expectation.configuration.kwargs
    if expectation.expectation_type.startswith("expect_table_"):
        return None  # column_list/column_set there are the expected values, compared by the expectation itself
    names = [kwargs[k] for k in COLUMN_KWARGS[:3] if isinstance(kwargs.get(k), str)]
    names += [n for n in kwargs.get("column_list") or [] if isinstance(n, str)]
    for name in names:
        same = [c for c in columns if c.casefold() == name.casefold() and c != name]
        if name not in columns:
            hint = f'; did you mean "{same[0]}"? Column names are case-sensitive' if same else ""
            return f'{expectation.expectation_type} [{name}]: column "{name}" does not exist in {qualified}{hint}'
        if same:
            return (f'{expectation.expectation_type} [{name}]: {qualified} also has the column "{same[0]}", which '
                    "Great Expectations cannot tell apart from it (it matches column names case-insensitively); "
                    "rename one, or check it with an unexpected_rows_expectation quoting the column")
    return None


def _one_line(exc: BaseException) -> str:
    """The message on one line (pydantic spreads the field and the reason over several)."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return (text[:297] + "...") if len(text) > 300 else text or type(exc).__name__


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
