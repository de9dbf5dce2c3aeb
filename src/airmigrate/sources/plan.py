"""`airmigrate plan <imported id>`: an imported script's statements in run order, grouped as the executor runs
them (one transaction, or one CONCURRENTLY statement alone, or key-range batches for a marked statement), each
with the lock it takes and whether it scans or rewrites the table (airmigrate.plan's rules)."""

from __future__ import annotations

from airmigrate.plan import analyze
from airmigrate.sources.model import Imported
from airmigrate.sources.runner import plan_steps


def render(migration: Imported, sql_text: str | None, conn=None, view=None) -> list[str]:
    """The plan as lines; a Python-only revision says so (Alembic runs it, the SQL is not known in advance)."""
    lines = [f"{migration.id}: {migration.title} ({migration.file})"]
    if sql_text is None:
        return lines + ["  Python revision (it reads the database): run through Alembic in one transaction with its "
                        "alembic_version change; its statements are not known before it runs"]
    for number, step in enumerate(plan_steps(view(sql_text) if view else sql_text, migration.file), 1):
        if step.batched:
            b = step.batched
            lines.append(f"  step {number}: in key-range batches of {b.size:,} rows on {b.table}.{b.key} (each batch "
                         "its own short transaction, resumable; pacing and the console's controls apply)")
            statements = [b.statement.replace("%%", "%")]
        elif step.autocommit:
            lines.append(f"  step {number}: alone, outside a transaction")
            statements = list(step.statements)
        else:
            lines.append(f"  step {number}: one transaction (lock_timeout with retries)")
            statements = list(step.statements)
        for statement in statements:
            if not statement.strip():
                continue
            try:
                analysis = analyze(statement.replace("%(lo)s", "0").replace("%(hi)s", "0"), conn)
                what = analysis.lock + (f", {analysis.effect}" if analysis.effect else "")
            except Exception:  # a statement the lock rules cannot parse: shown, not guessed
                what = "unknown"
            lines.append(f"    [{what}] {' '.join(statement.split())[:160]}")
    return lines
