"""The plan tells the truth about locks: every statement below runs against a real PostgreSQL, and the locks
it really took (``pg_locks``, read inside the still-open transaction) and the rewrites it really did
(``pg_class.relfilenode`` before/after) are held against what ``plan.analyze`` says.

- understatement (the plan names a weaker lock than PostgreSQL took on some relation, or says "no rewrite"
  when the table was rewritten) fails the test, with and without a target connection;
- overstatements are listed and must stay below a measured count (the static path is conservative on
  purpose: without the target it cannot know a column's type, a function's volatility or a domain's checks).

Statements PostgreSQL refuses in a transaction block (CONCURRENTLY, VACUUM) run in autocommit while a second
session holds a ROW EXCLUSIVE lock (so they wait where their lock conflicts) and a third samples ``pg_locks``
for their backend; the documented lock is used where sampling can miss it.
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from airmigrate import db, plan
from airmigrate.db import connect

MODES = plan.LOCK_MODES  # weakest first
PG_MODES = {"AccessShareLock": "ACCESS SHARE", "RowShareLock": "ROW SHARE", "RowExclusiveLock": "ROW EXCLUSIVE",
            "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE", "ShareLock": "SHARE",
            "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE",
            "AccessExclusiveLock": "ACCESS EXCLUSIVE"}

SETUP = """
CREATE SCHEMA other;
CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);
CREATE DOMAIN plain_int AS int;
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE SEQUENCE s;
CREATE FUNCTION vol_fn() RETURNS int LANGUAGE plpgsql VOLATILE AS $$BEGIN RETURN 1; END$$;
CREATE FUNCTION vol_sql_fn() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
CREATE FUNCTION stable_fn() RETURNS int LANGUAGE sql STABLE AS 'SELECT 1';
CREATE FUNCTION imm_fn(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE FUNCTION trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TABLE parent (id int PRIMARY KEY, name text);
INSERT INTO parent SELECT i, 'p' || i FROM generate_series(1, 100) i;
CREATE TABLE t (id bigint PRIMARY KEY, a int, b text, c varchar(20), d numeric(10,2), e timestamptz, f int,
                g text, h text, p int);
INSERT INTO t SELECT i, i, 'b' || i, 'c' || i, i, now(), i, NULL, i::text, i FROM generate_series(1, 100) i;
CREATE INDEX t_a_idx ON t (a);
CREATE INDEX t_b_idx ON t (b);
CREATE UNIQUE INDEX t_f_key_idx ON t (f);
CREATE INDEX t_h_idx ON t (h);
CREATE INDEX t_d_idx ON t (d);
ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0) NOT VALID;
ALTER TABLE t ADD CONSTRAINT t_p_fk FOREIGN KEY (p) REFERENCES parent (id) NOT VALID;
CREATE TRIGGER t_trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION trg_fn();
CREATE POLICY t_pol ON t USING (true);
CREATE VIEW v AS SELECT id FROM t;
CREATE MATERIALIZED VIEW mv AS SELECT id, name FROM parent;
CREATE UNIQUE INDEX mv_id ON mv (id);
CREATE UNLOGGED TABLE ul (id int);
CREATE TABLE scratch (id int);
CREATE TABLE part (id int, k int) PARTITION BY RANGE (k);
CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (10);
CREATE TABLE part_2 (id int, k int);
CREATE TABLE inh_child (id int NOT NULL, name text);
ANALYZE;
"""

STATEMENTS = [
    # ADD COLUMN: instant, or rewritten when the default is volatile / the type has checks
    "ALTER TABLE t ADD COLUMN x int",
    "ALTER TABLE t ADD COLUMN x int DEFAULT 0",
    "ALTER TABLE t ADD COLUMN x int NOT NULL DEFAULT 0",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT now()",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT now() + interval '1 day'",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT current_timestamp",
    "ALTER TABLE t ADD COLUMN x date DEFAULT CURRENT_DATE",
    "ALTER TABLE t ADD COLUMN x text DEFAULT current_user",
    "ALTER TABLE t ADD COLUMN x text DEFAULT 'a' || 'b'",
    "ALTER TABLE t ADD COLUMN x jsonb DEFAULT '{}'::jsonb",
    "ALTER TABLE t ADD COLUMN x int[] DEFAULT '{}'",
    "ALTER TABLE t ADD COLUMN x text DEFAULT lower('ABC')",
    "ALTER TABLE t ADD COLUMN x timestamptz DEFAULT clock_timestamp()",
    "ALTER TABLE t ADD COLUMN x float8 DEFAULT random()",
    "ALTER TABLE t ADD COLUMN x int DEFAULT (random() * 100)::int",
    "ALTER TABLE t ADD COLUMN x boolean DEFAULT random() > 0.5",
    "ALTER TABLE t ADD COLUMN x int DEFAULT floor(random() * 10)",
    "ALTER TABLE t ADD COLUMN x int DEFAULT CASE WHEN random() > 0.5 THEN 1 ELSE 0 END",
    "ALTER TABLE t ADD COLUMN x text DEFAULT md5(random()::text)",
    "ALTER TABLE t ADD COLUMN x uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE t ADD COLUMN x bigint DEFAULT nextval('s')",
    "ALTER TABLE t ADD COLUMN x int DEFAULT vol_fn()",
    "ALTER TABLE t ADD COLUMN x int DEFAULT vol_sql_fn()",  # inlined by the planner: volatile, no rewrite
    "ALTER TABLE t ADD COLUMN x int DEFAULT stable_fn()",
    "ALTER TABLE t ADD COLUMN x int DEFAULT imm_fn(1)",
    "ALTER TABLE t ADD COLUMN x serial",
    "ALTER TABLE t ADD COLUMN x bigserial",
    "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE t ADD COLUMN x bigint GENERATED BY DEFAULT AS IDENTITY",
    "ALTER TABLE t ADD COLUMN x int GENERATED ALWAYS AS (a * 2) STORED",
    "ALTER TABLE t ADD COLUMN x positive_int",
    "ALTER TABLE t ADD COLUMN x positive_int DEFAULT 1",
    "ALTER TABLE t ADD COLUMN x plain_int DEFAULT 1",
    "ALTER TABLE t ADD COLUMN x mood DEFAULT 'happy'",
    "ALTER TABLE t ADD COLUMN x int CHECK (x > 0)",
    "ALTER TABLE t ADD COLUMN x int REFERENCES parent (id)",
    "ALTER TABLE t ADD COLUMN x int UNIQUE",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS a int",
    "ALTER TABLE t ADD COLUMN x int DEFAULT 1, ADD COLUMN y float8 DEFAULT random()",
    # other column changes
    "ALTER TABLE t DROP COLUMN g",
    "ALTER TABLE t DROP COLUMN IF EXISTS zz",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT 5",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT (random() * 10)::int",
    "ALTER TABLE t ALTER COLUMN a DROP DEFAULT",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE t ALTER COLUMN a DROP NOT NULL",
    "ALTER TABLE t ALTER COLUMN a TYPE bigint",
    "ALTER TABLE t ALTER COLUMN a TYPE int",
    "ALTER TABLE t ALTER COLUMN c TYPE text",
    "ALTER TABLE t ALTER COLUMN c TYPE varchar(50)",
    "ALTER TABLE t ALTER COLUMN c TYPE varchar",
    "ALTER TABLE t ALTER COLUMN c TYPE varchar(10)",
    "ALTER TABLE t ALTER COLUMN d TYPE numeric(12,2)",
    "ALTER TABLE t ALTER COLUMN d TYPE numeric",
    "ALTER TABLE t ALTER COLUMN d TYPE numeric(12,4)",
    "ALTER TABLE t ALTER COLUMN b TYPE varchar(100)",
    "ALTER TABLE t ALTER COLUMN h TYPE int USING h::int",
    "ALTER TABLE t ALTER COLUMN f TYPE text",
    "ALTER TABLE t ALTER COLUMN e TYPE timestamp",
    "ALTER TABLE t ALTER COLUMN a TYPE positive_int",
    "ALTER TABLE t ALTER COLUMN a TYPE plain_int",
    "ALTER TABLE t ALTER COLUMN a SET STATISTICS 500",
    "ALTER TABLE t ALTER COLUMN a SET (n_distinct = 10)",
    "ALTER TABLE t ALTER COLUMN b SET STORAGE EXTERNAL",
    "ALTER TABLE t ALTER COLUMN b SET COMPRESSION pglz",
    "ALTER TABLE t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
    "ALTER TABLE t RENAME COLUMN b TO b2",
    # constraints
    "ALTER TABLE t ADD CONSTRAINT t_chk CHECK (a > 0)",
    "ALTER TABLE t ADD CONSTRAINT t_chk CHECK (a > 0) NOT VALID",
    "ALTER TABLE t VALIDATE CONSTRAINT t_a_positive",
    "ALTER TABLE t VALIDATE CONSTRAINT t_p_fk",
    "ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE (a)",
    "ALTER TABLE t ADD CONSTRAINT t_f_key UNIQUE USING INDEX t_f_key_idx",
    "ALTER TABLE scratch ADD PRIMARY KEY (id)",
    "ALTER TABLE t ADD CONSTRAINT t_a_excl EXCLUDE USING btree (a WITH =)",
    "ALTER TABLE t ADD CONSTRAINT t_f_fk FOREIGN KEY (f) REFERENCES parent (id)",
    "ALTER TABLE t ADD CONSTRAINT t_f_fk FOREIGN KEY (f) REFERENCES parent (id) NOT VALID",
    "ALTER TABLE t DROP CONSTRAINT t_a_positive",
    "ALTER TABLE t DROP CONSTRAINT t_p_fk",
    "ALTER TABLE t ALTER CONSTRAINT t_p_fk DEFERRABLE",
    "ALTER TABLE t RENAME CONSTRAINT t_a_positive TO t_a_pos",
    # table-level
    "ALTER TABLE t DISABLE TRIGGER t_trg",
    "ALTER TABLE t ENABLE TRIGGER ALL",
    "ALTER TABLE t ENABLE ROW LEVEL SECURITY",
    "ALTER TABLE t SET (fillfactor = 70)",
    "ALTER TABLE t SET (autovacuum_enabled = false)",
    "ALTER TABLE t RESET (fillfactor)",
    "ALTER TABLE t SET UNLOGGED",
    "ALTER TABLE ul SET LOGGED",
    "ALTER TABLE t SET TABLESPACE {tablespace}",
    "ALTER TABLE t SET ACCESS METHOD heap",
    "ALTER TABLE t CLUSTER ON t_a_idx",
    "ALTER TABLE t SET WITHOUT CLUSTER",
    "ALTER TABLE t OWNER TO CURRENT_USER",
    "ALTER TABLE t REPLICA IDENTITY FULL",
    "ALTER TABLE t RENAME TO t2",
    "ALTER TABLE t SET SCHEMA other",
    "ALTER TABLE part ATTACH PARTITION part_2 FOR VALUES FROM (10) TO (20)",
    "ALTER TABLE part DETACH PARTITION part_1",
    "ALTER TABLE inh_child INHERIT parent",
    # indexes
    "CREATE INDEX t_c_idx ON t (c)",
    "CREATE UNIQUE INDEX t_id_a_idx ON t (id, a)",
    "CREATE INDEX CONCURRENTLY t_c_idx ON t (c)",
    "DROP INDEX t_h_idx",
    "DROP INDEX CONCURRENTLY t_d_idx",
    "ALTER INDEX t_a_idx RENAME TO t_a_idx2",
    "ALTER INDEX t_a_idx SET (fillfactor = 50)",
    "REINDEX INDEX t_a_idx",
    "REINDEX TABLE t",
    "REINDEX INDEX CONCURRENTLY t_a_idx",
    "CLUSTER t USING t_a_idx",
    "VACUUM FULL t",
    "VACUUM t",
    "ANALYZE t",
    # other objects
    "CREATE TABLE n (id int)",
    "CREATE TABLE n (id int REFERENCES parent (id))",
    "CREATE TABLE n (id int, CONSTRAINT n_fk FOREIGN KEY (id) REFERENCES parent (id))",
    "CREATE TABLE n (LIKE t INCLUDING ALL)",
    "CREATE TABLE n () INHERITS (parent)",
    "CREATE TABLE part_3 PARTITION OF part FOR VALUES FROM (20) TO (30)",
    "CREATE TABLE n AS SELECT * FROM t",
    "CREATE VIEW v2 AS SELECT id FROM t",
    "CREATE OR REPLACE VIEW v AS SELECT id FROM t",
    "CREATE MATERIALIZED VIEW mv2 AS SELECT id FROM t",
    "REFRESH MATERIALIZED VIEW mv",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
    "CREATE TRIGGER t_trg2 AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION trg_fn()",
    "DROP TRIGGER t_trg ON t",
    "CREATE POLICY t_pol2 ON t USING (a > 0)",
    "ALTER POLICY t_pol ON t USING (a > 1)",
    "DROP POLICY t_pol ON t",
    "COMMENT ON TABLE t IS 'x'",
    "COMMENT ON COLUMN t.a IS 'x'",
    "COMMENT ON FUNCTION vol_fn() IS 'x'",
    "CREATE STATISTICS t_stats ON a, b FROM t",
    "GRANT SELECT ON t TO PUBLIC",
    "TRUNCATE scratch",
    "LOCK TABLE t IN SHARE MODE",
    "LOCK TABLE t IN ROW EXCLUSIVE MODE",
    "DROP TABLE scratch",
    "DROP VIEW v",
    "CREATE FUNCTION f2() RETURNS int LANGUAGE sql AS 'SELECT 2'",
    "CREATE SEQUENCE s2",
    "ALTER TYPE mood ADD VALUE 'meh'",
    "SET statement_timeout = '5s'",
    # DML
    "UPDATE t SET a = 1",
    "UPDATE t SET a = 1 WHERE id BETWEEN 1 AND 10",
    "DELETE FROM t WHERE id = 1",
    "INSERT INTO t (id) VALUES (1000)",
    "INSERT INTO t (id, a) SELECT id + 1000, a FROM t",
    "SELECT * FROM t",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE",
]

# What the PostgreSQL 15 docs give for the statements that cannot run in a transaction block, on their table:
# sampling pg_locks from a second session sees them only while they wait, so the docs fill in the rest.
DOCUMENTED = {
    "CREATE INDEX CONCURRENTLY t_c_idx ON t (c)": {"t": "SHARE UPDATE EXCLUSIVE"},
    # both end by deleting the (dead) old index under ACCESS EXCLUSIVE: index_drop() and AcquireDeletionLock()
    "DROP INDEX CONCURRENTLY t_d_idx": {"t": "SHARE UPDATE EXCLUSIVE", "t_d_idx": "ACCESS EXCLUSIVE"},
    "REINDEX INDEX CONCURRENTLY t_a_idx": {"t": "SHARE UPDATE EXCLUSIVE", "t_a_idx": "ACCESS EXCLUSIVE"},
    "VACUUM FULL t": {"t": "ACCESS EXCLUSIVE"},
    "VACUUM t": {"t": "SHARE UPDATE EXCLUSIVE"},
}

# measured: the static path (no target) overstates where it cannot know a type, a function or a domain;
# with the target it overstates only where PostgreSQL's choice depends on more than the plan looks at
# (+1 for ANALYZE t, which now and then shows no lock on t in pg_locks: a measuring quirk, not understood yet)
MAX_OVERSTATED_STATIC = 15
MAX_OVERSTATED_WITH_TARGET = 2
# a volatile LANGUAGE sql function the planner inlines to a constant: PostgreSQL sees no volatile function left
KNOWN_REWRITE_OVERSTATEMENTS = {"ALTER TABLE t ADD COLUMN x int DEFAULT vol_sql_fn()"}

RELATIONS = """
SELECT c.oid, c.relname, c.relkind, c.relfilenode, i.indrelid, toast.oid AS toast_owner
FROM pg_class c
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class toast ON toast.reltoastrelid = c.oid
WHERE c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
  AND c.relkind <> 'c'
"""


def _rank(mode: str | None) -> int:
    return MODES.index(mode) if mode in MODES else -1


class Relations:
    """The database's own relations (name, owning table for indexes and TOAST) and their relfilenodes."""

    def __init__(self, conn):
        rows = conn.execute(RELATIONS).fetchall()
        self.name = {r[0]: r[1] for r in rows}
        self.filenode = {r[1]: r[3] for r in rows}
        parent = {r[0]: (r[4] or r[5]) for r in rows}
        self.owner = {}
        for oid, name in self.name.items():
            owner = oid
            while parent.get(owner):
                owner = parent[owner]
            self.owner[name] = self.name.get(owner, name)
        self.tables = {r[1] for r in rows if r[2] in ("r", "p", "m")}
        self.indexes = {r[1] for r in rows if r[2] in ("i", "I")}


def _run_in_transaction(target, statement: str) -> dict:
    with connect(target) as conn:
        before = Relations(conn)
        conn.execute(statement)
        locks = conn.execute(
            "SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall()
        after = Relations(conn)
        scans = dict(conn.execute("SELECT relname, seq_scan FROM pg_stat_xact_user_tables").fetchall())
        conn.rollback()
    return _observed(before, after, locks, scans)


def _run_autocommit(target, statement: str) -> dict:
    """Outside a transaction block: a blocker holds ROW EXCLUSIVE on t, a sampler reads pg_locks for the pid."""
    with connect(target, autocommit=True) as conn, connect(target) as blocker, \
            connect(target, autocommit=True) as sampler:
        before = Relations(conn)
        pid = conn.info.backend_pid
        blocker.execute("LOCK TABLE t IN ROW EXCLUSIVE MODE")
        seen, done = set(), threading.Event()

        def sample():
            while not done.is_set():
                seen.update(sampler.execute("SELECT relation, mode FROM pg_locks WHERE pid = %s AND "
                                            "locktype = 'relation'", (pid,)).fetchall())
                time.sleep(0.002)

        thread = threading.Thread(target=sample)
        thread.start()
        release = threading.Timer(0.5, blocker.commit)
        release.start()
        try:
            conn.execute(statement)
        finally:
            release.join()
            done.set()
            thread.join()
        after = Relations(conn)
    observed = _observed(before, after, sorted(seen), {})
    for relation, mode in DOCUMENTED.get(statement, {}).items():
        if _rank(mode) > _rank(observed["locks"].get(relation)):
            observed["locks"][relation] = mode
    return observed


def _observed(before: Relations, after: Relations, locks, scans) -> dict:
    strongest: dict[str, str] = {}
    for oid, pg_mode in locks:
        name = before.name.get(oid)
        if name is None:  # created by the statement, or a catalog
            continue
        mode = PG_MODES[pg_mode]
        if _rank(mode) > _rank(strongest.get(name)):
            strongest[name] = mode
    rewritten = {name for name in before.tables if name in after.filenode
                 and after.filenode[name] != before.filenode[name] and before.filenode[name]}
    # a table renamed/moved keeps its relfilenode; a rename makes the old name vanish, which is not a rewrite
    return {"locks": strongest, "owner": before.owner, "indexes": before.indexes, "rewritten": rewritten,
            "scanned": {name for name, n in scans.items() if n}}


def observe(target, statement: str) -> dict:
    if db.needs_autocommit(statement):
        return _run_autocommit(target, statement)
    return _run_in_transaction(target, statement)


def planned_mode(analysis: plan.Analysis, relation: str, owner: str, is_index: bool) -> tuple[str | None, bool]:
    """(the lock the plan names for this relation, named explicitly?): by name, else via its table (an index,
    a TOAST table), else the plan's lock on relations it does not name."""
    def named(name, whats):
        modes = [lock.mode for lock in analysis.locks if _bare(lock.relation) == name and lock.what in whats]
        return max(modes, key=_rank) if modes else None

    everything = {lock.what for lock in analysis.locks} - {"indexes"}
    found = named(relation, everything | ({"indexes"} if is_index else set()))
    if found is not None:
        return found, True
    if owner != relation:
        found = (named(owner, {"indexes"}) if is_index else None) or named(owner, everything)
        if found is not None:
            return found, False
    return named("", everything | {"indexes"}), False


def _bare(name: str) -> str:
    return name.split(".")[-1].strip('"').lower()


def compare(statement: str, analysis: plan.Analysis, real: dict) -> tuple[list[str], list[str]]:
    """(understatements, overstatements) of the plan against what PostgreSQL did."""
    under, over = [], []
    for relation, mode in sorted(real["locks"].items()):
        said, explicit = planned_mode(analysis, relation, real["owner"].get(relation, relation),
                                      relation in real["indexes"])
        if _rank(said) < _rank(mode):
            under.append(f"{relation}: PostgreSQL took {mode}, plan says {said or 'nothing'}")
        elif _rank(said) > _rank(mode) and explicit:  # an index or TOAST table may well take less than its table
            over.append(f"{relation}: PostgreSQL took {mode}, plan says {said}")
    for lock in analysis.locks:
        name = _bare(lock.relation)
        if name and name in real["owner"] and not any(real["owner"].get(r) == name or r == name
                                                      for r in real["locks"]):
            over.append(f"{name}: PostgreSQL took no lock, plan says {lock.mode}")
    if real["rewritten"] and analysis.effect != "rewrite":
        under.append(f"rewrote {sorted(real['rewritten'])}, plan says {analysis.effect or 'no scan'}")
    if analysis.effect == "rewrite" and not real["rewritten"]:
        over.append("plan says rewrite, relfilenode unchanged")
    return under, over


@pytest.fixture
def lock_db(empty_db, pg_server):
    """The empty database with the tables, types and functions the statements need, and a tablespace."""
    tablespace = f"amtest_ts_{uuid.uuid4().hex[:8]}"
    with connect(empty_db, autocommit=True) as conn:
        conn.execute(SETUP)
        try:
            conn.execute("SET allow_in_place_tablespaces = on")
            conn.execute(f"CREATE TABLESPACE {tablespace} LOCATION ''")
        except psycopg.Error:
            tablespace = None
    yield empty_db, tablespace
    if tablespace:
        with connect(pg_server, autocommit=True) as conn:
            try:
                conn.execute(f"DROP TABLESPACE IF EXISTS {tablespace}")
            except psycopg.Error:
                conn.execute(f'DROP DATABASE IF EXISTS "{empty_db.dbname}" WITH (FORCE)')
                conn.execute(f"DROP TABLESPACE IF EXISTS {tablespace}")


def measure(target, tablespace) -> dict[str, list[dict]]:
    """Each statement run once against PostgreSQL; its plan with the target and without, compared to it."""
    results = {"with the target": [], "static (no target)": []}
    with connect(target, autocommit=True) as planning:
        for template in STATEMENTS:
            if "{tablespace}" in template and not tablespace:
                continue
            statement = template.replace("{tablespace}", tablespace)
            analyses = {"with the target": plan.analyze(statement, planning),
                        "static (no target)": plan.analyze(statement)}
            real = observe(target, statement)
            for mode, analysis in analyses.items():
                under, over = compare(statement, analysis, real)
                results[mode].append({"sql": statement, "plan": analysis, "real": real, "under": under,
                                      "over": over})
            if db.needs_autocommit(statement):  # committed: put the database back as the next ones expect
                planning.execute("DROP INDEX IF EXISTS t_c_idx")
                planning.execute("CREATE INDEX IF NOT EXISTS t_d_idx ON t (d)")
    return results


def report(title: str, results: list[dict]) -> str:
    lines = [f"{title}: {len(results)} statements, {sum(bool(r['under']) for r in results)} understated, "
             f"{sum(bool(r['over']) for r in results)} overstated"]
    for r in results:
        for kind in ("under", "over"):
            if r[kind]:
                lines.append(f"  {kind.upper()}STATED {r['sql']}: {'; '.join(r[kind])}")
    return "\n".join(lines)


def test_there_are_enough_statements():
    assert len(STATEMENTS) >= 80 and len(set(STATEMENTS)) == len(STATEMENTS)


def test_the_plan_never_understates_a_lock_or_a_rewrite(lock_db):
    target, tablespace = lock_db
    results = measure(target, tablespace)
    with_target, static = results["with the target"], results["static (no target)"]
    text = "\n".join(report(title, rows) for title, rows in results.items())
    print("\n" + text)
    assert not [r for r in with_target if r["under"]], text
    assert not [r for r in static if r["under"]], text
    assert sum(bool(r["over"]) for r in with_target) <= MAX_OVERSTATED_WITH_TARGET, text
    assert sum(bool(r["over"]) for r in static) <= MAX_OVERSTATED_STATIC, text
    # with the target, rewrites are exact: the plan says rewrite iff the table's relfilenode changed
    assert [r["sql"] for r in with_target if (r["plan"].effect == "rewrite") != bool(r["real"]["rewritten"])
            and r["sql"] not in KNOWN_REWRITE_OVERSTATEMENTS] == []


def test_unknown_statements_are_assumed_access_exclusive():
    analysis = plan.analyze("DO $$BEGIN PERFORM 1; END$$")
    assert analysis.lock == "ACCESS EXCLUSIVE"
    assert "unknown statement: assumed ACCESS EXCLUSIVE" in analysis.notes
    assert plan.classify("DO $$BEGIN PERFORM 1; END$$") == ("ACCESS EXCLUSIVE", "")


def test_a_lock_on_another_table_is_named():
    analysis = plan.analyze("CREATE TABLE n (id int REFERENCES parent (id))")
    assert [(lock.relation, lock.mode) for lock in analysis.locks] == [("parent", "SHARE ROW EXCLUSIVE")]
    analysis = plan.analyze("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (p) REFERENCES parent (id) NOT VALID")
    assert ("parent", "SHARE ROW EXCLUSIVE", "referenced table") in [(x.relation, x.mode, x.what)
                                                                     for x in analysis.locks]


def test_the_rendered_plan_names_locks_on_other_tables(tmp_path):
    import yaml

    from airmigrate.spec import load_migration

    folder = tmp_path / "0070_fk"
    folder.mkdir()
    (folder / "migration.yaml").write_text(yaml.safe_dump({"description": "fk", "table": "users"}))
    (folder / "up.sql").write_text("ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org_id) "
                                   "REFERENCES orgs (id) NOT VALID;\nDO $$BEGIN PERFORM 1; END$$;\n")
    (folder / "down.sql").write_text("ALTER TABLE users DROP CONSTRAINT IF EXISTS users_org_fk;\n")
    migration = load_migration(folder)
    text = plan.render(migration, plan.static_plan(migration))
    assert "also: SHARE ROW EXCLUSIVE on referenced table orgs (another table than users)" in text
    assert "also: unknown statement: assumed ACCESS EXCLUSIVE" in text
