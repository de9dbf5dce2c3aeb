"""delete_rows and move_rows on PostgreSQL: each batch is one statement, ``WITH d AS (DELETE ... RETURNING *)``
feeding the archive (and move_rows' destination), so what a batch deletes and what it keeps are one change;
the contract and the rollback's end are DO blocks that check before they drop."""

from __future__ import annotations

from airmigrate.engines import sql
from airmigrate.engines.operation_sql import RowsJob


def s(template: str, **parts) -> str:
    return sql.SQL(template).format(**parts).as_string(None)


def _columns(job: RowsJob) -> tuple[sql.Composable, sql.Composable]:
    """(the column list a re-insert selects, the same list in parentheses after the table or nothing): `*`
    without a target."""
    if job.columns is None:
        return sql.SQL("*"), sql.SQL("")
    same = sql.SQL(", ").join(map(sql.Identifier, job.columns))
    return same, sql.SQL("({})").format(same)


def expand(job: RowsJob) -> list[str]:
    created = ([s("CREATE TABLE IF NOT EXISTS {d} (LIKE {t} INCLUDING ALL)", d=job.destination, t=job.table)]
               if job.create else [])
    return created + [s("CREATE TABLE IF NOT EXISTS {a} (LIKE {t}, PRIMARY KEY ({k}))", a=job.archive, t=job.table,
                        k=sql.Identifier(job.key))]


def batch(job: RowsJob) -> list[str]:
    if job.destination is None:
        return [s("WITH d AS (DELETE FROM {t} WHERE " + job.in_range + " AND (" + job.where + ") RETURNING *) "
                  "INSERT INTO {a} SELECT * FROM d", t=job.table, a=job.archive)]
    same, listed = _columns(job)
    if job.into:
        into = sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(c) for c, _ in job.into))
        values = sql.SQL(", ").join(sql.SQL(e) for _, e in job.into)
    else:
        into, values = listed, same
    return [s("WITH d AS (DELETE FROM {t} WHERE " + job.in_range + " AND (" + job.where + ") RETURNING *), "
              "i AS (INSERT INTO {dest} {into} OVERRIDING SYSTEM VALUE SELECT {values} FROM d) "
              "INSERT INTO {a} SELECT * FROM d", t=job.table, dest=job.destination, into=into, values=values,
              a=job.archive)]


def contract(job: RowsJob) -> list[str]:
    """Drop the archive, refusing (nothing dropped) while its last batch is younger than keep_archive_days."""
    archive = job.archive
    return [s("DO $am$ BEGIN IF to_regclass({q}) IS NULL THEN RETURN; END IF; "
              "IF (SELECT max(b.finished_at) FROM airmigrate.batches b JOIN airmigrate.runs r USING (run_id) "
              "WHERE r.migration_id = {m} AND r.direction = 'up') > now() - make_interval(days => {d}) THEN "
              "RAISE EXCEPTION 'the archive % keeps the rows for keep_archive_days (%) after the last batch: the "
              "contract drops it after that. Run `airmigrate complete %` then (or roll back meanwhile); nothing was "
              "dropped', {q}, {d}, {m}; END IF; DROP TABLE {a}; END $am$",
              q=sql.Literal(archive.as_string(None)), m=sql.Literal(job.migration_id),
              d=sql.Literal(job.keep_archive_days), a=archive)]


def down(job: RowsJob) -> list[str]:
    return []


def down_batch(job: RowsJob) -> list[str]:
    same, listed = _columns(job)
    if job.destination is None:
        return [s("INSERT INTO {t} {into} OVERRIDING SYSTEM VALUE SELECT {cols} FROM {a} WHERE "
                  + job.in_range + " ON CONFLICT DO NOTHING", t=job.table, into=listed, cols=same, a=job.archive)]
    key, dest = sql.Identifier(job.key), job.destination
    moved = s(job.in_range + " AND {k} IN (SELECT {k} FROM {a} WHERE " + job.in_range + ")", k=key, a=job.archive)
    if job.into:  # the destination's rows are computed: the originals come back from the archive
        return [s("WITH gone AS (DELETE FROM {dest} WHERE " + moved + ") INSERT INTO {t} {cols} "
                  "OVERRIDING SYSTEM VALUE SELECT {same} FROM {a} WHERE " + job.in_range,
                  dest=dest, t=job.table, cols=listed, same=same, a=job.archive)]
    # the rows as the destination holds them now
    return [s("WITH gone AS (DELETE FROM {dest} WHERE " + moved + " RETURNING *) INSERT INTO {t} {cols} "
              "OVERRIDING SYSTEM VALUE SELECT {same} FROM gone", dest=dest, t=job.table, cols=listed, same=same)]


def down_contract(job: RowsJob) -> list[str]:
    """The archive goes only when every row in it is back in the table (a row the application re-created under
    the same key since keeps its archived version: the archive stays, with a warning in the rollback's log);
    a destination the migration created goes when it is empty."""
    tbl, key, archive = job.table, sql.Identifier(job.key), job.archive
    out = [s("DO $am$ BEGIN IF to_regclass({q}) IS NULL THEN RETURN; END IF; "
             "IF EXISTS (SELECT 1 FROM {a} x WHERE NOT EXISTS (SELECT 1 FROM {t} y WHERE y.{k} = x.{k})) "
             "THEN RAISE WARNING 'rows of % are not back in % (their key is taken): the archive is kept', "
             "{q}, {tq}; ELSE DROP TABLE {a}; END IF; END $am$",
             q=sql.Literal(archive.as_string(None)), a=archive, t=tbl, k=key, tq=sql.Literal(tbl.as_string(None)))]
    if job.create:
        out.append(s("DO $am$ BEGIN IF to_regclass({q}) IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {d}) "
                     "THEN DROP TABLE {d}; END IF; END $am$",
                     q=sql.Literal(job.destination.as_string(None)), d=job.destination))
    return out
