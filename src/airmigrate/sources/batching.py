"""`-- airmigrate: batch key=id [size=N]`: an imported script's UPDATE or DELETE run in key-range batches.

The marker is one comment line in the statement (or right before it), so the team's script stays valid
for Flyway or Alembic (to them it is a comment). The statement then runs through airmigrate's batched
backfill engine (airmigrate.stages.backfill): key ranges walked on the key's index, each batch its own
short transaction committed with its state row, resumable after a kill, paced by the application's
latency, with the console's pause / resume / resize. Without the marker, lint reports the statement
(`unbatched-update` / `unbatched-delete`) with this recipe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airmigrate import state
from airmigrate.db import connect, split_statements
from airmigrate.errors import SpecError
from airmigrate.spec import BackfillSpec, Migration, MigrationSpec
from airmigrate.stages.backfill import run_shard, start_backfill

MARKER = re.compile(r"--\s*airmigrate:\s*batch\b(?P<args>[^\n]*)", re.I)
TARGET = re.compile(r'^\s*(?:UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?(?P<table>(?:"[^"]+"|[A-Za-z_][\w$]*)'
                    r'(?:\.(?:"[^"]+"|[A-Za-z_][\w$]*))?)', re.I)
RECIPE = ("add the line `-- airmigrate: batch key=<key column>` right before the statement in the script (a comment "
          "to Flyway and Alembic): airmigrate then runs it in key-range batches, each its own short transaction, "
          "resumable; or acknowledge the rule for a small table in the source's settings")


@dataclass(frozen=True)
class Batched:
    """A marked statement: the table, its key, the batch size, and the statement bounded per batch."""

    table: str  # schema.table
    key: str
    size: int
    statement: str  # with `<key> BETWEEN %(lo)s AND %(hi)s` added to its WHERE, every other % doubled


def located(text: str) -> list[tuple[str, str | None, int, int]]:
    """(statement, its marker line or None, first line, last line) for each statement of a script. The parser's
    split drops comments, so a marker is found in the text between the previous statement's end and this one's
    end (the line before it, or a comment inside it)."""
    out, position = [], 0
    for statement in split_statements(text):
        start = text.find(statement, position)
        if start < 0:  # the parser normalised something: keep the statement, no marker
            out.append((statement, None, 0, 0))
            continue
        end = start + len(statement)
        marker = MARKER.search(text, position, end)
        first = text.count("\n", 0, start) + 1
        out.append((statement, marker.group(0) if marker else None, first, first + statement.count("\n")))
        position = end
    return out


def strip_comments_head(statement: str) -> str:
    """The statement without the comment lines before it (split_statements keeps them)."""
    lines = statement.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


def marker_of(statement: str, marker: str | None, where, schema: str = "public") -> Batched | None:
    """The batch marker of one statement, parsed; None without one. A bad marker names the script and the fix."""
    match = MARKER.search(marker or "")
    if not match:
        return None
    args = dict(re.findall(r"(\w+)\s*=\s*([\w.]+)", match["args"]))
    unknown = set(args) - {"key", "size"}
    body = strip_comments_head(MARKER.sub("", statement)).strip().rstrip(";")
    target = TARGET.match(body)
    if unknown or "key" not in args or not re.fullmatch(r"[A-Za-z_][\w$]*", args["key"]) or (
            "size" in args and not args["size"].isdigit()):
        raise SpecError(where, "-- airmigrate: batch", f"'{match.group(0).strip()}' is not a valid marker",
                        "write `-- airmigrate: batch key=<key column> [size=<rows per batch>]`")
    if target is None:
        raise SpecError(where, "-- airmigrate: batch", "the marked statement is not an UPDATE or DELETE",
                        "put the marker on the line right before an UPDATE or a DELETE FROM")
    if _top_level(body, "RETURNING") is not None:
        raise SpecError(where, "-- airmigrate: batch", "a batched statement cannot have RETURNING",
                        "remove RETURNING (each batch's rows are counted by airmigrate)")
    table = target["table"].replace('"', "")
    if "." not in table:  # the script's default schema (Flyway's defaultSchema): the engine's connection has none
        table = f"{schema}.{table}"
        body = body[:target.start("table")] + f'"{schema}".' + body[target.start("table"):]
    return Batched(table, args["key"], int(args.get("size", 10_000)), bounded(body, table, args["key"]))


def bounded(body: str, table: str, key: str) -> str:
    """The statement limited to one batch: its WHERE ANDed with `<table>.<key> BETWEEN %(lo)s AND %(hi)s`."""
    text = body.replace("%", "%%")  # psycopg reads every %: only the batch bounds are placeholders
    bound = f'"{table.split(".")[-1]}".{key} BETWEEN %(lo)s AND %(hi)s'
    where = _top_level(text, "WHERE")
    if where is None:
        return f"{text} WHERE {bound}"
    return f"{text[:where]}WHERE ({text[where + 5:].strip()}) AND {bound}"


def _top_level(text: str, word: str) -> int | None:
    """Where `word` stands as a keyword outside quotes, comments and parentheses (None: nowhere)."""
    i, depth, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            i = text.find(c, i + 1) + 1 or n
            continue
        if text.startswith("--", i):
            i = text.find("\n", i) + 1 or n
            continue
        if text.startswith("/*", i):
            i = text.find("*/", i) + 2 if text.find("*/", i) >= 0 else n
            continue
        if c == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", text[i:])):
            end = text.find(tag.group(0), i + len(tag.group(0)))
            i = end + len(tag.group(0)) if end >= 0 else n
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and text[i:i + len(word)].upper() == word and (i == 0 or not (text[i - 1].isalnum() or
                text[i - 1] == "_")) and not (text[i + len(word):i + len(word) + 1].isalnum()):
            return i
        i += 1
    return None


def synthetic_migration(migration_id: str, batched: Batched):
    """A Migration the backfill engine can run: the marked statement as its backfill.sql, nothing else."""
    spec = MigrationSpec(description=f"batched statement of {migration_id}", table=batched.table, key=batched.key,
                         batch_size=batched.size, shards=1,
                         backfill=BackfillSpec(sql="(imported script)", columns=[batched.key]))
    return Migration(id=migration_id, folder=None, spec=spec, up_sql="", down_sql="", cleanup_sql=None,
                     backfill_sql=batched.statement, transform_file=None, expectations_file=None, checksum="")


def run_batched(target, migration_id: str, batched: Batched, dag_run_id: str | None) -> dict:
    """Run a marked statement through the backfill engine under a run of its own (`<id>#<n>`): the batch table,
    the cursor and the console's controls are the ones every backfill has; a resumed run goes on from its
    cursor."""
    migration = synthetic_migration(migration_id, batched)
    with connect(target, autocommit=True) as conn:
        run_id, resumed = state.begin_run(conn, migration_id, "up", dag_run_id)
    start_backfill(target, migration, run_id, batched.size)
    result = run_shard(target, migration, run_id, 0)
    with connect(target, autocommit=True) as conn:
        state.finish_run(conn, run_id, "succeeded")
    return {"run_id": run_id, "resumed": resumed, **result}
