"""A Flyway project as a source of migrations: its scripts in Flyway's order, where each stands according to
``flyway_schema_history``, and the rows Flyway would write for what airmigrate runs."""

from __future__ import annotations

from airmigrate.errors import PreflightError
from airmigrate.sources import flyway_history as fh
from airmigrate.sources.flyway import Project, Script, Version, load_project
from airmigrate.sources.model import Imported, SourceFile, Status


class FlywaySource:
    kind = "flyway"

    def __init__(self, source: SourceFile):
        self.file = source
        self.name = source.name
        self.project: Project = load_project(source.resolve(source.settings.location),
                                             source.resolve(source.settings.config))

    # -- what there is (no database) ------------------------------------------------------------------
    def migrations(self) -> list[Imported]:
        """Versioned scripts in version order, then the repeatable ones by description (Flyway's order)."""
        return [self._imported(s) for s in (*self.project.versioned, *self.project.repeatable)]

    def _imported(self, script: Script) -> Imported:
        text = script.path.read_bytes().decode("utf-8").removeprefix("\ufeff")
        undo = self.project.undo.get(script.version) if script.version else None
        down = self.project.substitute(undo, undo.path.read_text().removeprefix("\ufeff")) if undo else None
        title = f"V{script.version} {script.description}" if script.version else f"R {script.description}"
        return Imported(id=f"{self.name}_{script.slug}", source=self.name, title=title, file=script.path,
                        up_sql=self.project.substitute(script, text), down_sql=down, checksum=str(script.checksum),
                        repeatable=script.kind == "R", ref=script)

    # -- where each stands (flyway_schema_history) ----------------------------------------------------
    def statuses(self, conn) -> dict[str, Status]:
        rows = fh.rows(conn, self.project)
        baseline = max((Version(r.version) for r in rows if r.type == "BASELINE" and r.version), default=None)
        out = {}
        for migration in self.migrations():
            script: Script = migration.ref
            if script.kind == "R":
                mine = [r for r in rows if r.version is None and r.type == "SQL" and r.description == script.description]
            else:
                mine = [r for r in rows if r.version and r.type in ("SQL", "UNDO_SQL")
                        and Version(r.version) == script.version]
            out[migration.id] = self._status(script, mine[-1] if mine else None, baseline)
        return out

    def unresolved(self, conn) -> list[tuple[str, Status]]:
        """Versions flyway_schema_history says are applied whose script is gone (`flyway validate`: "applied
        migration not resolved locally"): (label, status) for the listing, each a problem."""
        rows = fh.rows(conn, self.project)
        here = {s.version for s in self.project.versioned}
        last: dict[Version, object] = {}
        for row in rows:
            if row.version and row.type in ("SQL", "UNDO_SQL"):
                last[Version(row.version)] = row
        return [(f"{self.name} V{version} ({row.script})",
                 Status("applied, script missing", f"{row.script} is in {fh.qualified(self.project)} but not in "
                        f"{', '.join(str(p) for p in self.project.locations)}: restore it (flyway validate fails too)",
                        row.installed_on, row.installed_by, row.execution_time / 1000, problem=True))
                for version, row in sorted(last.items()) if version not in here and row.type == "SQL" and row.success]

    @staticmethod
    def _status(script: Script, last, baseline) -> Status:
        if last is None:
            if script.version and baseline and script.version <= baseline:
                return Status("baseline", f"below the baseline {baseline}: not run")
            return Status("pending")
        when = {"applied_at": last.installed_on, "applied_by": last.installed_by,
                "duration_s": last.execution_time / 1000}
        if last.type == "UNDO_SQL":
            return Status("rolled back", f"undone by {last.script}", **when)
        if not last.success:
            return Status("failed", f"flyway_schema_history says {last.script} failed (success = false): fix it, "
                                    "then run it again (the failed row is replaced, as `flyway repair` would)",
                          problem=True, **when)
        if last.checksum != script.checksum:
            if script.kind == "R":
                return Status("outdated", f"checksum {last.checksum} -> {script.checksum}: runs again", **when)
            return Status("changed since applied", f"changed since applied: {script.name} (Flyway checksum "
                          f"{last.checksum} applied, {script.checksum} now; flyway validate fails too): restore the "
                          "script that ran; put the change in a new version", problem=True, **when)
        return Status("applied", **when)

    def check_order(self, migration: Imported, statuses: dict[str, Status]) -> None:
        """Versioned scripts run in version order, repeatables after every versioned one; a version below the
        highest applied one only with out_of_order (Flyway's outOfOrder)."""
        ids = [m.id for m in self.migrations()]
        mine = ids.index(migration.id)
        script: Script = migration.ref
        for other in self.migrations()[:mine]:
            status = statuses[other.id]
            if not status.done and not other.repeatable:
                raise PreflightError(f"{migration.id} must run after {other.id} ({other.title}), which is "
                                     f"{status.state}: Flyway applies versions in order. Run it first: "
                                     f"`airmigrate run {other.id}`")
        if script.kind == "V" and not self.file.settings.out_of_order:
            later = [m for m in self.migrations()[mine + 1:] if not m.repeatable and statuses[m.id].done
                     and statuses[m.id].state != "baseline"]
            if later:
                raise PreflightError(f"{migration.id} ({migration.title}) is lower than {later[-1].title}, which is "
                                     "applied already: Flyway would refuse it too. Give it a higher version, or set "
                                     f"`out_of_order: true` in {self.file.path}")

    def blocking_rollback(self, migration: Imported, statuses: dict[str, Status]) -> list[Imported]:
        """Versions applied after this one: undone first, latest first (Flyway's undo order)."""
        ids = [m.id for m in self.migrations()]
        return [m for m in self.migrations()[ids.index(migration.id) + 1:]
                if not m.repeatable and statuses[m.id].state == "applied"]

    # -- what to write ---------------------------------------------------------------------------------
    def lock(self, target):
        return fh.flyway_lock(target, self.project)

    def prepare(self, conn) -> None:
        fh.ensure_table(conn, self.project)

    def finish_up_sql(self, migration: Imported, started_at: str) -> list[str]:
        """In the transaction of the script's last statements: the row Flyway writes (a failed row of an earlier
        attempt removed first, as `flyway repair` would)."""
        script: Script = migration.ref
        return [fh.remove_failed_sql(self.project, str(script.version) if script.version else None, script.name),
                fh.script_row_sql(self.project, script, True, started_at)]

    def failed_up_sql(self, migration: Imported, started_at: str) -> list[str]:
        """After a failure that left statements committed (outside a transaction): Flyway's success = false row."""
        script: Script = migration.ref
        return [fh.remove_failed_sql(self.project, str(script.version) if script.version else None, script.name),
                fh.script_row_sql(self.project, script, False, started_at)]

    def finish_down_sql(self, migration: Imported, started_at: str) -> list[str]:
        """The row Flyway Teams writes for an undo: type UNDO_SQL, the U script's name and checksum."""
        undo = self.project.undo[migration.ref.version]
        return [fh.script_row_sql(self.project, undo, True, started_at, undo=True)]

    def baseline_sql(self, migration: Imported) -> list[str]:
        """`flyway baseline -baselineVersion=<its version>`."""
        script: Script = migration.ref
        if script.version is None:
            raise PreflightError(f"{migration.id} is a repeatable script: baseline names a version")
        return [fh.baseline_sql(self.project, script.version)]

    def tool_rows(self, conn, migration: Imported) -> list[str]:
        """This script's rows in flyway_schema_history (its version's, or a repeatable's description), for the
        run's report."""
        script: Script = migration.ref
        mine = [r for r in fh.rows(conn, self.project) if (r.version and script.version and Version(r.version)
                == script.version) or (script.version is None and r.version is None and r.type == "SQL"
                and r.description == script.description)]
        return [f"{fh.qualified(self.project)}: rank {r.installed_rank}, version {r.version}, {r.type} {r.script}, "
                f"checksum {r.checksum}, by {r.installed_by} at {r.installed_on:%Y-%m-%d %H:%M:%S}, "
                f"{r.execution_time} ms, success {str(r.success).lower()}" for r in mine] or ["(no row)"]

    def no_down_reason(self, migration: Imported) -> str:
        return (f"{migration.title} has no undo script: add U{migration.ref.version}__<description>.sql beside it"
                if migration.ref.version else "a repeatable script has no undo: change it and run it again")
