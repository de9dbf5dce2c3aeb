"""An Alembic project as a source of migrations, driven by Alembic itself (no re-implementation):

- the order: Alembic's revision graph (``ScriptDirectory.walk_revisions``; branches, merges with tuple
  ``down_revision``, ``depends_on``), one migration per revision, in the order ``alembic upgrade heads`` runs them;
- what is applied: ``alembic_version`` read by Alembic's ``MigrationContext`` (one row per head) and every
  ancestor of those heads;
- a revision's SQL from Alembic's offline mode (``as_sql``), generated in the task from the real current heads, so
  the version-table statements are the ones Alembic emits (an INSERT for a new branch head, DELETE + UPDATE at a
  merge); it then runs through airmigrate's executor (lint, lock_timeout, batch markers, steps recorded);
- a revision whose Python cannot run offline (it reads rows) runs through Alembic itself inside the task, online,
  one step (``MigrationStep``), with Alembic's ``HeadMaintainer`` updating ``alembic_version``.

The project's env.py is not run: airmigrate hands Alembic the connection, as env.py would. A project whose env.py
sets another version table names it in the source settings (``version_table``, ``version_table_schema``). Alembic
keeps no checksums: a revision airmigrate ran has the sha256 of its file in airmigrate.history, and a file changed
since is drift; one applied by Alembic itself has nothing to compare with.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from contextlib import contextmanager
from pathlib import Path

from airmigrate import state
from airmigrate.db import Target, connect, split_statements
from airmigrate.errors import PreflightError, SpecError, TransientError
from airmigrate.sources import render_cache
from airmigrate.sources.model import Imported, SourceFile, Status


class AlembicSource:
    kind = "alembic"

    def __init__(self, source: SourceFile):
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        self.file, self.name = source, source.name
        path = source.resolve(source.settings.location)
        ini = path if path.is_file() else (path / "alembic.ini" if (path / "alembic.ini").is_file() else None)
        self.config = Config(str(ini)) if ini else Config()
        location = self.config.get_main_option("script_location") if ini else str(path)
        if not location:
            raise SpecError(ini, "script_location", "missing", "set script_location in [alembic]")
        if not Path(location).is_absolute() and ini and not Path(location).is_dir():
            location = str(ini.parent / location)  # relative to the ini file when not to the working directory
        self.config.set_main_option("script_location", location)
        try:
            self.script = ScriptDirectory.from_config(self.config)
            self._order = list(reversed(list(self.script.walk_revisions("base", "heads"))))
        except Exception as exc:  # alembic.util.CommandError: a broken graph (a missing down_revision, a cycle)
            raise SpecError(ini or path, "revision graph", str(exc).splitlines()[0],
                            "fix the revisions' down_revision so `alembic history` works") from None
        self.settings = source.settings

    # -- what there is ---------------------------------------------------------------------------------
    def migrations(self) -> list[Imported]:
        return [self._imported(rev) for rev in self._order]

    def _imported(self, rev) -> Imported:
        slug = re.sub(r"[^a-z0-9]+", "_", (rev.doc or "").lower()).strip("_")[:40].rstrip("_")
        checksum = hashlib.sha256(Path(rev.path).read_bytes()).hexdigest()
        preview, down = render_cache.cached(self._cache_key(rev, checksum), lambda: (
            self._offline_or_none(rev, True, _tuple(rev.down_revision)),
            self._offline_or_none(rev, False, (rev.revision,))))
        return Imported(id=f"{self.name}_{rev.revision[:12]}" + (f"_{slug}" if slug else ""), source=self.name,
                        title=f"{rev.revision} ({rev.doc})", file=Path(rev.path), up_sql=preview, down_sql=down,
                        checksum=checksum, ref=rev)

    def _cache_key(self, rev, checksum: str) -> dict:
        """What the offline SQL of a revision depends on: its file (mtime, size, sha256), the version table
        and Alembic's version (a new Alembic may render differently)."""
        from alembic import __version__ as alembic_version

        info = Path(rev.path).stat()
        return {"file": str(Path(rev.path).resolve()), "mtime_ns": info.st_mtime_ns, "size": info.st_size,
                "sha256": checksum, "version_table": self.settings.version_table,
                "version_table_schema": self.settings.version_table_schema, "alembic": alembic_version}

    def _offline_or_none(self, rev, up: bool, heads: tuple[str, ...]) -> str | None:
        try:
            return self.offline_sql(rev, up, heads)
        except Exception:  # the revision needs a database (it reads rows): it runs online, through Alembic
            return None

    def offline_sql(self, rev, up: bool, heads: tuple[str, ...], table_exists: bool = False) -> str:
        """Alembic's `--sql` output for this one revision from these heads, without BEGIN/COMMIT (airmigrate's
        executor makes the transactions) and without the CREATE TABLE of a version table that exists."""
        from alembic.runtime.environment import EnvironmentContext
        from alembic.runtime.migration import MigrationStep

        step = (MigrationStep.upgrade_from_script if up else MigrationStep.downgrade_from_script)(
            self.script.revision_map, rev)
        buffer = io.StringIO()
        env = EnvironmentContext(self.config, self.script, fn=lambda heads_, ctx: [step], as_sql=True,
                                 starting_rev=heads or "base", destination_rev=rev.revision)
        with env:
            env.configure(url="postgresql+psycopg://", output_buffer=buffer, literal_binds=True,
                          dialect_opts={"paramstyle": "named"},  # as `alembic init`'s env.py: no %% doubling
                          version_table=self.settings.version_table,
                          version_table_schema=self.settings.version_table_schema)
            with env.begin_transaction():
                env.run_migrations()
        text = re.sub(r"(?m)^(BEGIN|COMMIT);\s*$", "", buffer.getvalue())
        if table_exists:
            text = re.sub(r"(?is)CREATE TABLE\s+(\S+\.)?" + re.escape(self.settings.version_table) + r"\s*\(.*?\);",
                          "", text, count=1)
        return text.strip() + "\n"

    # -- where each stands -----------------------------------------------------------------------------
    def heads(self, conn) -> tuple[str, ...] | None:
        """alembic_version's rows (None: no version table)."""
        name = (f"{self.settings.version_table_schema}." if self.settings.version_table_schema else "") + \
            self.settings.version_table
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            return None
        return tuple(r[0] for r in conn.execute(f"SELECT version_num FROM {name} ORDER BY 1"))

    def unresolved(self, conn) -> list[tuple[str, Status]]:
        """alembic_version rows naming a revision the script folder does not have (Alembic: "Can't locate
        revision"): each a problem in the listing."""
        known = {m.ref.revision for m in self.migrations()}
        return [(f"{self.name} {head}", Status("applied, revision missing", f"alembic_version holds {head}, which "
                 "is not in the script folder: restore its file", problem=True))
                for head in self.heads(conn) or () if head not in known]

    def statuses(self, conn) -> dict[str, Status]:
        """Applied or pending from alembic_version; an applied revision whose file changed since airmigrate ran
        it (the sha256 in airmigrate.history) is drift, as a changed native file is."""
        heads = tuple(h for h in self.heads(conn) or () if h in {m.ref.revision for m in self.migrations()})
        applied = {rev.revision for rev in self.script.iterate_revisions(heads, "base")} if heads else set()
        ran = {row["migration_id"]: row for row in state.all_history(conn)}
        return {m.id: _status(m, m.ref.revision in applied, ran.get(m.id)) for m in self.migrations()}

    def check_order(self, migration: Imported, statuses: dict[str, Status]) -> None:
        """Every revision it comes after (down_revision and depends_on, transitively) applied first."""
        ids = {m.ref.revision: m for m in self.migrations()}
        rev = migration.ref
        needed = [r for r in self.script.iterate_revisions(rev.revision, "base") if r.revision != rev.revision]
        needed += [self.script.get_revision(d) for d in _tuple(rev.dependencies)]
        for other in needed:
            imported = ids[other.revision]
            if not statuses[imported.id].done:
                raise PreflightError(f"{migration.id} must run after {imported.id} ({imported.title}), which is "
                                     f"{statuses[imported.id].state}: Alembic applies a revision after the ones it "
                                     f"revises. Run it first: `airmigrate run {imported.id}`")

    def blocking_rollback(self, migration: Imported, statuses: dict[str, Status]) -> list[Imported]:
        """Applied revisions that revise this one (its descendants): they go first."""
        rev = migration.ref.revision
        ids = {m.ref.revision: m for m in self.migrations()}
        above = [r for r in self.script.iterate_revisions("heads", rev) if r.revision != rev]
        return [ids[r.revision] for r in above if statuses[ids[r.revision].id].state == "applied"]

    # -- running ---------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, target: Target):
        """Alembic takes no lock: one advisory lock per version table keeps two airmigrate runs of one project
        (two revisions' DAGs) from moving alembic_version at once."""
        conn = connect(target, autocommit=True, application_name="airmigrate alembic lock")
        key = f"airmigrate.alembic.{self.settings.version_table_schema or ''}.{self.settings.version_table}"
        try:
            deadline = time.monotonic() + 300
            while not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]:
                if time.monotonic() > deadline:  # another revision of this project is running: retry later
                    raise TransientError(f"another airmigrate run holds {key} (a revision of {self.name} is "
                                         "running) for 300 s")
                time.sleep(1.0)
            yield key
        finally:
            conn.close()

    def prepare(self, conn) -> None:
        """Nothing: Alembic creates its version table with the first revision (offline SQL or online)."""

    def sql_now(self, conn, migration: Imported, up: bool = True) -> str | None:
        """The revision's SQL from the real current heads (None: it runs online, through Alembic)."""
        heads = self.heads(conn)
        try:
            return self.offline_sql(migration.ref, up, heads or (), table_exists=heads is not None)
        except Exception:
            return None

    def lint_view(self, text: str) -> str:
        """The SQL lint sees: the version table's own statements blanked (Alembic's bookkeeping, one row)."""
        table = re.escape(self.settings.version_table)
        return re.sub(r"(?ims)^(INSERT INTO|UPDATE|DELETE FROM)\s+(\S+\.)?" + table + r"\b[^;]*;",
                      lambda m: "\n" * m.group(0).count("\n"), text)

    def finish_up_sql(self, migration: Imported, started_at: str) -> list[str]:
        return []  # alembic_version's statements are in the revision's own offline SQL

    finish_down_sql = finish_up_sql

    def run_python(self, target: Target, migration: Imported, direction: str, started_at: str) -> None:
        """One revision through Alembic itself, online, in one transaction with its alembic_version change."""
        import sqlalchemy
        from alembic.runtime.migration import MigrationStep

        step = (MigrationStep.upgrade_from_script if direction == "up" else MigrationStep.downgrade_from_script)(
            self.script.revision_map, migration.ref)
        url = sqlalchemy.URL.create("postgresql+psycopg", username=target.user, password=target.password,
                                    host=target.host, port=target.port, database=target.dbname)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            self._run_online(engine, step)
        except sqlalchemy.exc.DBAPIError as exc:  # the driver's error: a lock timeout stays one (Airflow retries)
            raise exc.orig if isinstance(exc.orig, Exception) else exc from None
        finally:
            engine.dispose()

    def _run_online(self, engine, step) -> None:
        """One transaction: the SETs, the revision's upgrade()/downgrade() and Alembic's alembic_version change."""
        from alembic.runtime.environment import EnvironmentContext

        with engine.connect() as connection:
            connection.exec_driver_sql(f"SET lock_timeout = {int(self.settings.lock_timeout_ms)}")
            connection.exec_driver_sql(f"SET statement_timeout = {int(self.settings.statement_timeout_ms)}")
            env = EnvironmentContext(self.config, self.script, fn=lambda heads, ctx: [step])
            with env:
                env.configure(connection=connection, version_table=self.settings.version_table,
                              version_table_schema=self.settings.version_table_schema)
                with env.begin_transaction():
                    env.run_migrations()
            connection.commit()

    def python_down(self, migration: Imported) -> bool:
        return True  # downgrade() always exists in a revision file; offline or through Alembic

    def baseline_sql(self, migration: Imported) -> list[str]:
        """`alembic stamp <revision>` from an empty history: the version table and its one row, as Alembic
        makes them (its own offline output for a stamp)."""
        from alembic.runtime.environment import EnvironmentContext

        buffer = io.StringIO()
        env = EnvironmentContext(self.config, self.script, fn=lambda heads, ctx: self.script._stamp_revs(
            migration.ref.revision, heads), as_sql=True, starting_rev="base", destination_rev=migration.ref.revision)
        with env:
            env.configure(url="postgresql+psycopg://", output_buffer=buffer, literal_binds=True,
                          dialect_opts={"paramstyle": "named"}, version_table=self.settings.version_table,
                          version_table_schema=self.settings.version_table_schema)
            with env.begin_transaction():
                env.run_migrations()
        text = re.sub(r"(?m)^(BEGIN|COMMIT);\s*$", "", buffer.getvalue())

        return split_statements(text)

    def tool_rows(self, conn, migration: Imported) -> list[str]:
        """alembic_version after the run (its heads), for the run's report."""
        heads = self.heads(conn)
        return [f"{self.settings.version_table}: " + (", ".join(heads) if heads else "(no row)")
                if heads is not None else f"{self.settings.version_table}: (no table)"]

    def no_down_reason(self, migration: Imported) -> str:
        return "its downgrade() cannot be rendered"


def _status(migration: Imported, applied: bool, hist: dict | None) -> Status:
    if not applied:
        return Status("pending")
    if hist is None or hist["status"] != "applied":  # applied by Alembic itself: no checksum to compare
        return Status("applied")
    when = {"applied_at": hist["applied_at"], "applied_by": hist["applied_by"], "duration_s": hist["duration_s"]}
    if hist["checksum"] != migration.checksum:
        return Status("changed since applied", f"changed since applied: {migration.file} (sha256 "
                      f"{hist['checksum'][:12]} applied, {migration.checksum[:12]} now): restore the revision file "
                      "that ran; put the change in a new revision (`alembic revision`)", problem=True, **when)
    return Status("applied", **when)


def _tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
