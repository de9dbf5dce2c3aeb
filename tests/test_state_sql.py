"""Every engine's state statements (``Engine.state_sql()``) answer to the same names, so state.py, lease.py and
the backfill never ask which engine they have (server-less: runs in `make check`)."""

from __future__ import annotations

from airmigrate import engines
from airmigrate.engines.base import Engine


def test_every_engine_names_the_same_state_statements():
    modules = {name: engines.named(name).state_sql() for name in engines.REGISTRY}
    needed = {"SCHEMA_DDL", "ACTIVE_RUN_FOR_UPDATE", "TAKE_OVER_RUN", "insert_run", "OWNED_RUN", "ACTIVE_RUN",
              "LATEST_RUN", "STAGE_DONE", "mark_stage_done", "add_facts", "FINISH_RUN", "RUNS_OF", "START_HISTORY",
              "ALL_HISTORY", "MARK_APPLIED", "MARK_ROLLED_BACK", "BATCH_SUMMARY", "PROGRESS_NOW", "PROGRESS_REFRESH",
              "FAILED_SHARE", "OPEN_CURSOR", "OPEN_CONTROLS", "batch_succeeded", "take_batch_numbers", "KEY_AS_TEXT", "FIRST_KEY",
              "ROW_BETWEEN", "EXTEND_LEASE", "EXTEND_LEASE_UNTIL", "OPEN_RUN", "HEALTH_QUERIES", "state_table_exists",
              "relation_exists", "create_state_tables", "xact_lock"}
    for name, module in modules.items():
        assert needed <= set(vars(module)), f"{name} lacks {sorted(needed - set(vars(module)))}"
    health = {name: set(module.HEALTH_QUERIES) for name, module in modules.items()}
    assert len({frozenset(names) for names in health.values()}) == 1, health


def test_the_state_methods_are_part_of_the_engine_interface():
    for method in ("state_sql", "create_state_tables", "xact_lock", "lease_try", "lease_release", "lease_sessions",
                   "paces_by_latency"):
        assert method in Engine.__abstractmethods__
    assert all(engines.named(name).paces_by_latency() for name in engines.REGISTRY), "MySQL too (issue 22)"


def test_postgresql_keeps_its_statements_word_for_word():
    """A PostgreSQL target sees what it saw before the MySQL engine came (a few spot checks of moved text)."""
    pg = engines.named("postgresql").state_sql()
    assert pg.SCHEMA_DDL.startswith("\nCREATE SCHEMA IF NOT EXISTS airmigrate;\nCREATE TABLE IF NOT EXISTS "
                                    "airmigrate.history (")
    assert "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_active_per_migration\n    ON airmigrate.runs (migration_id, " \
           "direction) WHERE status IN ('pending', 'running', 'paused', 'failed');" in pg.SCHEMA_DDL
    assert pg.FIRST_KEY == "SELECT {sel} FROM {t} {where} ORDER BY {order} OFFSET %s LIMIT 1"
    assert pg.ACTIVE_RUN == ("SELECT run_id FROM airmigrate.runs WHERE migration_id = %s AND direction = %s "
                             "AND status = ANY(%s)")


def test_every_engine_names_the_same_console_queries():
    """The console's, the report's and the lifecycle commands' engine text (``Engine.console_sql()``): the same
    names everywhere, PostgreSQL's word for word as before, MySQL's on its UTC clock."""
    modules = {name: engines.named(name).console_sql() for name in engines.REGISTRY}
    needed = {"NOW", "DUMP_LABEL", "state_tables", "pacer_rate", "busy", "rows_done_within", "holder_heartbeat",
              "rate_per_10s", "batch_page", "measured_rate", "baseline_lock", "baseline_conflicts", "record_baseline",
              "timeout_settings", "connection_usable", "connection_idle"}
    for name, module in modules.items():
        assert needed <= set(vars(module)), f"{name} lacks {sorted(needed - set(vars(module)))}"
    assert "console_sql" in Engine.__abstractmethods__
    pg, my = modules["postgresql"], modules["mysql"]
    assert pg.timeout_settings(500, 600000, True) == ["SET LOCAL lock_timeout = '500ms';",
                                                      "SET LOCAL statement_timeout = '600000ms';"]
    assert pg.NOW == "now()"
    assert my.NOW == "UTC_TIMESTAMP(6)" and my.timeout_settings(1500, 2000, True)[0] == \
        "SET SESSION lock_wait_timeout = 2;"
    assert engines.named("postgresql").command_refusal("rehearse") is None
    why, fix = engines.named("mysql").command_refusal("rehearse")
    assert "pg_dump" in why and "airmigrate run" in fix


def test_every_engine_names_the_same_pacing_statements_and_readers():
    """airmigrate.pacing runs ``Engine.pacing_sql()``'s names on either engine (issue 22: MySQL paces too)."""
    needed = {"START_RUN", "TRY_LEAD", "SHARED_BUDGET", "START_PROBE", "SET_BUDGET", "ROWS_LAST_SECOND",
              "OUR_ACTIVE_SESSIONS", "STATEMENTS_NAME", "mark_own_session", "activity", "statements", "server_cpus",
              "SAMPLE_S", "PROBE_SAMPLE_S", "CANARY"}
    for name in engines.REGISTRY:
        module = engines.named(name).pacing_sql()
        assert needed <= set(vars(module)), f"{name} lacks {sorted(needed - set(vars(module)))}"
        assert module.START_RUN.count("%s") == 3 and module.SET_BUDGET.count("%s") == 3, name
    assert "pacing_sql" in Engine.__abstractmethods__
