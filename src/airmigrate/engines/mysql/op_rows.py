"""delete_rows and move_rows on MySQL / MariaDB: the archive keeps each deleted row through a trigger the batch
turns on, and the checks before a drop are a stored procedure called once.

Why a trigger: MySQL has no ``DELETE ... RETURNING`` to feed the archive. Copying first (``INSERT INTO archive
SELECT ... FOR UPDATE``) and deleting second is two statements whose row counts add up to twice the rows, and
the delete must then find exactly the rows archived (a `where` on ``NOW()`` moves between the two statements;
a key the application re-inserted after an earlier batch is in the archive already). An ``AFTER DELETE``
trigger on the table inserts the row being deleted (``OLD``) into the archive, and for move_rows into the
destination, inside the DELETE itself: one statement, its row count the rows deleted, the archive holding
exactly what was deleted, rolled back with it. It acts only when the session says so (``@airmigrate_rows`` set
to the migration's id by the batch, cleared after it): the application's own deletes go on as before, and a
killed batch's session takes the setting with it. The rollback's way back uses the same device in the other
direction (move_rows: a trigger on the destination, or on the table when `columns` computed the moved rows).

The archive lives in the ``airmigrate`` database (where the state tables and snapshots are), with the table's
columns (not its generated ones: they are derived) and its key as primary key, no other index: a unique
email of a deleted row must not stop a later row with the same email from being archived.

Nothing is vacuumed between batches: InnoDB's purge thread removes deleted rows by itself once no transaction
can see them (maintenance.dead_tuples is 0 here), so `vacuum_dead_tuples` has nothing to act on.

The contract's `keep_archive_days` check and the rollback's "every row back" check need an IF: MySQL runs IF
only inside a stored program (MariaDB's anonymous ``BEGIN NOT ATOMIC`` is not MySQL 8's), so each is a
procedure in ``airmigrate``, created, called and dropped (a failed call leaves it for the retry, which replaces
it). A refusal is ``SIGNAL`` with at most 128 characters (the server's limit on MESSAGE_TEXT).
"""

from __future__ import annotations

from airmigrate.engines import sql
from airmigrate.engines.mysql.parsing import on_record
from airmigrate.engines.operation_sql import RowsJob

SWITCH = "@airmigrate_rows"  # the session variable a batch sets to turn the trigger on
MESSAGE_MAX = 128              # MySQL's limit on SIGNAL's MESSAGE_TEXT


def s(template: str, **parts) -> str:
    return sql.SQL(template).format(**parts).as_string(None)


def _names(columns) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _row_of(record: str, columns) -> sql.Composable:
    """``OLD.a, OLD.b``: a trigger row's columns."""
    return sql.SQL(", ").join(sql.SQL(record + ".{}").format(sql.Identifier(c)) for c in columns)


def _columns(job: RowsJob) -> tuple[sql.Composable, sql.Composable]:
    """(the columns as a list, in parentheses after a table name) of the rows kept: without a target (the plan)
    `*` and nothing."""
    if job.columns is None:
        return sql.SQL("*"), sql.SQL("")
    return _names(job.columns), sql.SQL("({})").format(_names(job.columns))


def _values(record: str, job: RowsJob) -> sql.Composable:
    return sql.SQL(record + ".*") if job.columns is None else _row_of(record, job.columns)


def _trigger(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def back_trigger_name(job: RowsJob) -> str:
    """The rollback's trigger (at most 64 characters, MySQL's limit on a name)."""
    return job.helper[:59] + "_back"


def _switch(value: str | None) -> str:
    """The batch's switch of the trigger: on (the value it acts on) or off (NULL)."""
    return s("SET " + SWITCH + " = {v}", v=sql.SQL("NULL") if value is None else sql.Literal(value))


def _down_value(job: RowsJob) -> str:
    return job.migration_id + ":down"


def expand(job: RowsJob) -> list[str]:
    listed, _ = _columns(job)
    schema = job.table.strings[0]
    out = []
    if job.create:  # LIKE: the table's columns, defaults, generated columns and indexes (not its foreign keys)
        out.append(s("CREATE TABLE IF NOT EXISTS {d} LIKE {t}", d=job.destination, t=job.table))
    out.append(s("CREATE TABLE IF NOT EXISTS {a} (PRIMARY KEY ({k})) SELECT {cols} FROM {t} WHERE 1 = 0",
                 a=job.archive, k=sql.Identifier(job.key), cols=listed, t=job.table))
    keep = [s("INSERT INTO {a} {into} VALUES ({row})", a=job.archive, into=_columns(job)[1],
              row=_values("OLD", job))]
    if job.destination is not None:
        keep.append(_into_destination(job))
    out += [s("DROP TRIGGER IF EXISTS {trg}", trg=_trigger(schema, job.helper)),
            s("CREATE TRIGGER {trg} AFTER DELETE ON {t} FOR EACH ROW BEGIN IF " + SWITCH + " = {v} THEN "
              + "; ".join(keep) + "; END IF; END", trg=_trigger(schema, job.helper), t=job.table,
              v=sql.Literal(job.migration_id))]
    return out


def _into_destination(job: RowsJob) -> str:
    """The deleted row (OLD) into the destination: its columns as they are, or computed by `columns`."""
    if job.into:
        return s("INSERT INTO {d} ({cols}) VALUES (" + ", ".join(on_record(e, "OLD") for _, e in job.into) + ")",
                 d=job.destination, cols=_names(c for c, _ in job.into))
    return s("INSERT INTO {d} {into} VALUES ({row})", d=job.destination, into=_columns(job)[1],
             row=_values("OLD", job))


def batch(job: RowsJob) -> list[str]:
    """Turn the trigger on, delete (the trigger keeps each row), turn it off: only the DELETE counts rows."""
    return [_switch(job.migration_id),
            s("DELETE FROM {t} WHERE " + job.in_range + " AND (" + job.where + ")", t=job.table),
            _switch(None)]


def contract(job: RowsJob) -> list[str]:
    """The trigger goes; the archive goes unless its last batch is younger than keep_archive_days (refused,
    nothing dropped: the error names keep_archive_days and the command to run later)."""
    schema = job.table.strings[0]
    message = (f"{job.archive.strings[1]} is kept keep_archive_days ({job.keep_archive_days}) after the last "
               f"batch; nothing dropped: run airmigrate complete later")[:MESSAGE_MAX]
    body = s("IF (SELECT MAX(b.finished_at) FROM airmigrate.batches b JOIN airmigrate.runs r ON r.run_id = b.run_id "
             "WHERE r.migration_id = {m} AND r.direction = 'up') > UTC_TIMESTAMP(6) - INTERVAL {d} DAY THEN "
             "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {msg}; END IF; DROP TABLE IF EXISTS {a};",
             m=sql.Literal(job.migration_id), d=sql.Literal(job.keep_archive_days), msg=sql.Literal(message),
             a=job.archive)
    return [s("DROP TRIGGER IF EXISTS {trg}", trg=_trigger(schema, job.helper))] + _call_once(job.helper, body)


def _call_once(name: str, body: str) -> list[str]:
    """A procedure in airmigrate with `body`, called, then dropped (replaced first when a failed call left it)."""
    procedure = sql.Identifier("airmigrate", name)
    return [s("DROP PROCEDURE IF EXISTS {p}", p=procedure),
            s("CREATE PROCEDURE {p}() BEGIN ", p=procedure) + body + " END",
            s("CALL {p}()", p=procedure),
            s("DROP PROCEDURE IF EXISTS {p}", p=procedure)]


def down(job: RowsJob) -> list[str]:
    """The up trigger goes; move_rows gets its way back: without `columns` a trigger on the destination that
    puts each row deleted there back into the table as it is now; with `columns` a trigger on the table that
    removes the computed row from the destination as the original comes back from the archive."""
    schema = job.table.strings[0]
    out = [s("DROP TRIGGER IF EXISTS {trg}", trg=_trigger(schema, job.helper))]
    if job.destination is None:
        return out
    back = _trigger(schema, back_trigger_name(job))
    if job.into:
        create = s("CREATE TRIGGER {trg} AFTER INSERT ON {t} FOR EACH ROW BEGIN IF " + SWITCH + " = {v} THEN "
                   "DELETE FROM {d} WHERE {k} = NEW.{k}; END IF; END", trg=back, t=job.table, d=job.destination,
                   k=sql.Identifier(job.key), v=sql.Literal(_down_value(job)))
    else:
        create = s("CREATE TRIGGER {trg} AFTER DELETE ON {d} FOR EACH ROW BEGIN IF " + SWITCH + " = {v} THEN "
                   "INSERT INTO {t} {into} VALUES ({row}); END IF; END", trg=back, d=job.destination, t=job.table,
                   into=_columns(job)[1], row=_values("OLD", job), v=sql.Literal(_down_value(job)))
    return out + [s("DROP TRIGGER IF EXISTS {trg}", trg=back), create]


def down_batch(job: RowsJob) -> list[str]:
    """delete_rows: the archived rows of the range back into the table, a key taken meanwhile keeping the
    application's row (ON DUPLICATE KEY UPDATE with no change). move_rows: out of the destination (or the
    originals from the archive, with `columns`), the trigger of :func:`down` doing the other half."""
    same, listed = _columns(job)
    key = sql.Identifier(job.key)
    if job.destination is None:
        return [s("INSERT INTO {t} {into} SELECT {cols} FROM {a} WHERE " + job.in_range
                  + " ON DUPLICATE KEY UPDATE {tk} = {tk}", t=job.table, into=listed, cols=same, a=job.archive,
                  tk=sql.Identifier(*job.table.strings, job.key))]
    if job.into:
        move = s("INSERT INTO {t} {into} SELECT {cols} FROM {a} WHERE " + job.in_range, t=job.table, into=listed,
                 cols=same, a=job.archive)
    else:
        move = s("DELETE FROM {d} WHERE " + job.in_range + " AND {k} IN (SELECT {k} FROM {a} WHERE "
                 + job.in_range + ")", d=job.destination, k=key, a=job.archive)
    return [_switch(_down_value(job)), move, _switch(None)]


def down_contract(job: RowsJob) -> list[str]:
    """The way-back trigger goes; the archive goes when every row in it is back in the table (else it stays,
    with a warning); a destination the migration created goes when it is empty."""
    schema, key = job.table.strings[0], sql.Identifier(job.key)
    message = f"rows of {job.archive.strings[1]} are not back (their key is taken): the archive is kept"
    # DATABASE() inside the procedure is the procedure's database, the target's state database (airmigrate__<db>),
    # where the archive is: a literal 'airmigrate' would name no database the connection's rewrite reaches
    body = s("IF EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = "
             "{an}) THEN IF EXISTS (SELECT 1 FROM {a} x WHERE NOT EXISTS (SELECT 1 FROM {t} y WHERE y.{k} = x.{k})) "
             "THEN SIGNAL SQLSTATE '01000' SET MESSAGE_TEXT = {msg}; ELSE DROP TABLE {a}; END IF; END IF;",
             an=sql.Literal(job.archive.strings[1]), a=job.archive, t=job.table, k=key,
             msg=sql.Literal(message[:MESSAGE_MAX]))
    if job.create:
        body += s(" IF EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = {ds} AND table_name = {dn})"
                  " THEN IF NOT EXISTS (SELECT 1 FROM {d}) THEN DROP TABLE {d}; END IF; END IF;",
                  ds=sql.Literal(job.destination.strings[0]), dn=sql.Literal(job.destination.strings[-1]),
                  d=job.destination)
    out = [s("DROP TRIGGER IF EXISTS {trg}", trg=_trigger(schema, back_trigger_name(job)))] \
        if job.destination is not None else []
    return out + _call_once(job.helper, body)
