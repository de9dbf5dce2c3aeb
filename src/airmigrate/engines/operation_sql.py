"""The part of the Engine interface that migration.yaml's operations ask for: the SQL building blocks each engine
writes its own way (row triggers, column DDL, indexes and constraints, the row operations' archive), so that an
operation stays one module for every engine and no operation says which engine it is on.

:class:`airmigrate.engines.base.Engine` inherits it; it is apart only to keep each file readable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from airmigrate.engines.sql import Identifier


# the data the row operations' methods take
@dataclass(frozen=True)
class RowsJob:
    """What delete_rows / move_rows ask of an engine (plain data: the operation builds it). Names are SQL pieces,
    `where` and the `into` expressions are already checked by the engine's parser, `in_range` is the batch's
    key-range condition with its placeholders."""
    migration_id: str
    table: Identifier                  # the migration's table, (schema, table)
    key: str                           # its key column (one)
    where: str                         # the rows
    in_range: str                      # `key BETWEEN %(lo)s AND %(hi)s`, rendered
    archive: Identifier                # airmigrate.archive_<migration>
    helper: str                        # a per-migration name for the engine's helpers (triggers, procedures)
    columns: tuple[str, ...] | None    # the columns a re-insert writes (not generated); None: no target (plan)
    keep_archive_days: int = 7
    destination: Identifier | None = None   # move_rows' `to`; None for delete_rows
    into: tuple[tuple[str, str], ...] = ()  # move_rows' `columns`: (destination column, expression)
    create: bool = False                    # move_rows created the destination


@dataclass(frozen=True)
class SplitJob:
    """What split_table asks of an engine that writes its own steps (plain data: the operation builds it)."""
    table: tuple[str, str]             # the migration's table, (schema, table)
    new_table: str                     # created in the same schema
    key: str                           # the key column (one), the new table's primary key
    columns: tuple[str, ...]           # the moved columns, in the order the spec names them
    types: dict[str, str]              # the key's and the moved columns' types in the target ("text": no target)
    structure: dict | None             # the table before the migration (airmigrate.structure.read_table); None: plan
    sync: str                          # a per-migration name for the up trigger(s)
    back: str                          # ... and for the rollback's trigger(s) on the new table
    contracted: bool                   # the rollback runs after the contract (the moved columns are gone)


class OperationSql(ABC):
    """The operations' building blocks (see the module docstring)."""

    # -- operations -----------------------------------------------------------------------------------------------
    def operation_refusal(self, op: str) -> tuple[str, str] | None:
        """(why, fix) when the operation `op` (migration.yaml's `op:`) cannot run on this engine: the spec refuses it
        at load, naming the field, before anything runs. None: the engine runs it."""
        return None

    # -- operations: rows (delete_rows, move_rows) ----------------------------------------------------------------
    # Each returns the statements of one phase of the operation for this engine (the operation module assembles
    # them into its Steps); `job` says what to move where (RowsJob: plain data). Batch statements carry
    # %(lo)s / %(hi)s and run in the transaction that marks the batch done; their row counts add up to the rows
    # deleted or moved (the batch's `rows`).
    @abstractmethod
    def rows_expand(self, job: RowsJob) -> list[str]:
        """Create the archive (keyed like the table, no other index), the destination when `create`, and whatever
        the engine's batches need (MySQL: the trigger that archives what a batch deletes)."""

    @abstractmethod
    def rows_batch(self, job: RowsJob) -> list[str]:
        """Per batch: delete the rows of the key range matching `where`, keeping each in the archive (and, for
        move_rows, inserting it into the destination), all in the batch's transaction."""

    @abstractmethod
    def rows_contract(self, job: RowsJob) -> list[str]:
        """Drop the archive (and the engine's helpers), refusing with an error that says `keep_archive_days`
        while its last batch is younger than that: nothing dropped then."""

    @abstractmethod
    def rows_down(self, job: RowsJob) -> list[str]:
        """The rollback's short DDL before its batches (MySQL: the up trigger goes, move_rows' way back comes)."""

    @abstractmethod
    def rows_down_batch(self, job: RowsJob) -> list[str]:
        """Per batch of the archive's keys: put the rows back (delete_rows: without overwriting a key taken
        meanwhile; move_rows: out of the destination, or from the archive when `columns` computed them)."""

    @abstractmethod
    def rows_down_contract(self, job: RowsJob) -> list[str]:
        """The rollback's end: drop the archive when every row in it is back (else keep it, warning), and a
        destination the migration created when it is empty."""

    # -- operations: split_table --------------------------------------------------------------------------------------
    def split_table_sql(self, job: SplitJob) -> dict[str, list[str]] | None:
        """split_table's phases (expand, backfill, contract, down, down_backfill, down_contract) for an engine whose
        triggers and upserts are not PostgreSQL's; None: airmigrate.operations.split_table's own (PostgreSQL's)."""
        return None

    def split_refusals(self, structure: dict | None, columns: list[str], key: tuple[str, ...]) -> list[str]:
        """What this engine's split_table cannot take over to the new table beyond airmigrate.operations.carry's
        refusals, each with its fix (preflight refuses); empty: nothing more."""
        return []

    # -- operations: indexes, constraints, tables ----------------------------------------------------------------
    # The statements of add_index, add_unique, add_check, add_foreign_key, drop_table, rename_table, rename_index,
    # rename_constraint and create_table's rollback, for one phase each (the operation modules compose them into
    # Steps): how each stays online differs by engine (PostgreSQL: CONCURRENTLY, NOT VALID + VALIDATE, DO blocks;
    # MySQL: the server's online ALTER, RENAME TABLE, an orphan scan).
    def partial_index_refusal(self) -> tuple[str, str] | None:
        """(why, fix) when the engine has no partial indexes (add_index's `where`); None when it has."""
        return None

    @abstractmethod
    def create_index_sql(self, schema: str, table: str, name: str, columns: list[str], unique: bool = False,
                         where: str | None = None) -> str:
        """Build an index without blocking writes; nothing when it exists (a retry)."""

    @abstractmethod
    def drop_index_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the table's index `name` without blocking writes, when it exists."""

    @abstractmethod
    def add_unique_sql(self, schema: str, table: str, name: str, columns: list[str]) -> list[str]:
        """A unique constraint named `name` on `columns`, its index built online."""

    @abstractmethod
    def drop_unique_sql(self, schema: str, table: str, name: str) -> list[str]:
        """add_unique's undoing, each step nothing when already done."""

    @abstractmethod
    def add_check_sql(self, schema: str, table: str, name: str, expression: str) -> list[str]:
        """A CHECK constraint, existing rows checked without blocking writes (or by the executor the server needs)."""

    @abstractmethod
    def drop_check_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the CHECK constraint `name` when it exists."""

    @abstractmethod
    def add_foreign_key_sql(self, schema: str, table: str, name: str, columns: list[str], references: tuple[str, ...],
                            references_columns: list[str], on_delete: str, key: str, key_type: str) -> list[str]:
        """A foreign key enforced for every write from its first statement on, existing rows proven afterwards
        without blocking writes (`key`, of type `key_type`: the column a batched proof walks)."""

    @abstractmethod
    def drop_foreign_key_sql(self, schema: str, table: str, name: str) -> str:
        """Drop the foreign key `name` when it exists."""

    @abstractmethod
    def rename_index_sql(self, schema: str, table: str, old: str, new: str) -> str:
        """Rename the index `old` (of `table`, in `schema`) when it exists."""

    @abstractmethod
    def rename_constraint_sql(self, schema: str, table: str, old: str, new: str) -> str:
        """Rename the table's constraint `old` when it exists."""

    @abstractmethod
    def rename_table_sql(self, schema: str, table: str, to: str) -> dict[str, list[str]]:
        """rename_table's phases (expand, contract, down, down_contract): both names work for the application
        from the expand until the contract (and back, from the down until the down_contract)."""

    @abstractmethod
    def retire_table_sql(self, schema: str, table: str, retired: str) -> dict[str, list[str]]:
        """drop_table's phases (contract, down): the table moved into airmigrate's schema as `retired`, not
        dropped, and moved back by the rollback."""

    @abstractmethod
    def drop_created_table_sql(self, schema: str, table: str, retired: str) -> str:
        """create_table's rollback: drop the table when empty, else retire it as `retired` (no row lost)."""

    # -- operations: columns (triggers, column DDL) ---------------------------------------------------------------
    # What add_column, rename_column, change_column_type and drop_column (airmigrate.operations) write differently
    # per engine. A row trigger `name` on `table` (schema, table) is whatever the engine needs (PostgreSQL: a
    # function and a trigger; MySQL: one trigger per event); its expressions are already read from the row.
    @abstractmethod
    def computed_column_trigger(self, name: str, table: tuple[str, str], column: str, expression: str) -> list[str]:
        """(Re)create the row trigger that sets `column` to `expression` on every insert and update."""

    @abstractmethod
    def two_way_sync_trigger(self, name: str, table: tuple[str, str], old: str, new: str) -> list[str]:
        """(Re)create the row trigger keeping two columns equal: on insert the missing one filled from the other,
        on update the changed one copied to the other."""

    @abstractmethod
    def cast_back_trigger(self, name: str, table: tuple[str, str], source: str, target: str, type_: str) -> list[str]:
        """(Re)create the row trigger copying a value the application writes now into `source` (an insert, a
        changed value) to `target`, converted to `type_`."""

    @abstractmethod
    def drop_row_trigger(self, name: str, table: tuple[str, str]) -> list[str]:
        """Drop the row trigger `name` (and what it runs) when it exists."""

    @abstractmethod
    def distinct(self, a: str, b: str) -> str:
        """The NULL-safe "a differs from b" (IS DISTINCT FROM)."""

    @abstractmethod
    def cast(self, expression: str, type_: str) -> str:
        """`expression` converted to `type_` where it is assigned to a column of that type."""

    @abstractmethod
    def set_not_null(self, table: tuple[str, str], column: str, type_: str, default: str | None) -> list[str]:
        """Make a column NOT NULL without blocking writes (`type_` and `default`: its definition, for an engine
        that restates it)."""

    @abstractmethod
    def swap_columns(self, table: tuple[str, str], trigger: str, old: str, new: str, retired: str) -> list[str]:
        """Drop the row trigger `trigger` keeping `new` in sync with `old`, and give `old` the name `retired` and `new`
        the name `old`, with nothing the application writes falling between (PostgreSQL: one transaction; MySQL:
        under LOCK TABLES, for milliseconds)."""

    @abstractmethod
    def restore_dropped_column(self, table: tuple[str, str], column: str, type_: str, structure: dict | None
                               ) -> tuple[list[str], list[str]]:
        """(down, down_contract) bringing back a dropped column empty, for the snapshot's values to fill in between:
        as much of its definition (`structure`: the table before, airmigrate.structure.read_table) as the engine
        can give it without blocking writes."""

    def carry_column_sql(self, structure: dict | None, column: str, onto: str, final: str, new_type: str | None = None
                         ) -> tuple[list[str], list[str], list[str]] | None:
        """(build, release, finish): everything `column` has (indexes, NOT NULL, default, comment) rebuilt on its
        replacement `onto` of the same table (of type `new_type`, when it changes), called `final` once the old one
        is dropped (see
        airmigrate.operations.carry). None: the engine uses airmigrate.operations.carry's statements."""
        return None

    def type_change_probe(self, structure: dict | None, column: str, new_type: str) -> list[str] | None:
        """Statements that fail, on an empty temporary copy of the table, exactly when what `column` has (default,
        indexes) cannot apply to `new_type`; None: airmigrate.operations.carry.probe's (PostgreSQL's)."""
        return None

    def replacement_refusals(self, structure: dict | None, column: str) -> list[str]:
        """What this engine's carry (:meth:`carry_column_sql`) cannot take over from `column` to a replacement,
        each with its fix (preflight refuses); empty: everything, or airmigrate.operations.carry judges."""
        return []

    @abstractmethod
    def fill_back_from_snapshot(self, table: tuple[str, str], key: str, back: str, column: str, original: str,
                                snapshot: tuple[str, str]) -> str:
        """change_column_type's rollback batch: `back` (NULL: not written by the application meanwhile) set to the
        snapshot's original value of `column`, or `column` converted to `original` for a row newer than the
        snapshot; the key range as %(lo)s / %(hi)s. Never a locking read of the table beside the rows it writes
        (MySQL: a read of them would take shared locks the application's writes deadlock with)."""

    @abstractmethod
    def placed_after(self, column: str) -> str:
        """The clause putting an added column right after `column` (MySQL's ` AFTER c`, so a replacement takes the
        original's place once it is dropped); empty where the engine cannot place columns."""

    @abstractmethod
    def drop_or_rename_back(self, table: tuple[str, str], old: str, new: str, live_columns: frozenset[str] | None
                            ) -> list[str]:
        """rename_column's way back: while `old` is there (before the contract) drop the copy `new`, else rename
        `new` back to `old`; decided from `live_columns` (the table when the rollback started) or by the server."""
