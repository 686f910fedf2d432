"""Writes projected rows to the read models, idempotently: a row whose key is already there is
left alone, so redelivered events and overlapping replays change nothing."""

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import lru_cache

from sqlalchemy import Boolean, Date, Float, Integer, String, Table, Uuid, delete, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

from services.alerts.db import UtcDateTime
from services.dsmb.projection import Row, Rows, rows_of
from services.dsmb.readmodels import READ_MODELS
from shared.ae_dictionary import AeDictionary
from shared.events import Envelope


class Projector:
    def __init__(self, engine: AsyncEngine, dictionary: AeDictionary) -> None:
        self.engine = engine
        self.dictionary = dictionary
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(f"no read models on {engine.dialect.name}: PostgreSQL or SQLite")
        self._postgres = engine.dialect.name == "postgresql"

    async def project(self, events: Iterable[Envelope]) -> int:
        """Project `events` in one transaction; returns how many rows they state."""
        rows = [row for event in events for row in rows_of(event, self.dictionary)]
        await self.write(rows)
        return len(rows)

    async def write(self, rows: Rows, connection: AsyncConnection | None = None) -> None:
        """Write `rows` (from rows_of) in one transaction, on `connection` (from
        `self.connection()`) when given, else on one taken from the pool for it."""
        if not rows:
            return
        by_table: dict[Table, list[Row]] = defaultdict(list)
        for table, row in rows:
            by_table[table].append(row)
        if connection is None:
            async with self.connection() as connection:
                await self._write(connection, by_table)
        else:
            await self._write(connection, by_table)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for many writes: a rebuild's batches need no checkout (and pre-ping
        round trip) each."""
        async with self.engine.connect() as connection:
            if self._postgres:
                # Each write is a single statement, atomic by itself: no BEGIN and COMMIT.
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    async def _write(self, connection: AsyncConnection, by_table: dict[Table, list[Row]]) -> None:
        if self._postgres:
            await connection.exec_driver_sql(*_unnest_insert(by_table))
            return
        async with connection.begin():
            for table, table_rows in by_table.items():
                statement = sqlite.insert(table).on_conflict_do_nothing()
                await connection.execute(statement, table_rows)

    async def clear(self) -> None:
        """Empty every read model (before a rebuild from the log)."""
        async with self.engine.begin() as connection:
            if self._postgres:
                # Instead of deleting row by row: no dead rows and index entries left behind for
                # the rebuild's inserts to wade through, at a fraction of the time (readers of
                # the tables wait for it, a moment, where a DELETE would let them read on).
                names = ", ".join(table.name for table in READ_MODELS)
                await connection.execute(text(f"TRUNCATE {names}"))
                return
            for table in READ_MODELS:
                await connection.execute(delete(table))


def _unnest_insert(by_table: dict[Table, list[Row]]) -> tuple[str, tuple[list, ...]]:
    """Every table's rows in one statement and one round trip, each column sent as one array;
    the statement and its parameters."""
    parts = tuple((table, tuple(table_rows[0])) for table, table_rows in by_table.items())
    parameters = tuple(
        [row[column] for row in table_rows]
        for (_, columns), table_rows in zip(parts, by_table.values(), strict=True)
        for column in columns
    )
    return _statement(parts), parameters


@lru_cache(maxsize=256)
def _statement(parts: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING per table, the tables after
    the last as data-modifying CTEs; parameters: the columns in order, table after table."""
    inserts, number = [], 0
    for table, columns in parts:
        arrays = []
        for column in columns:
            number += 1
            arrays.append(f"${number}::{_array_type(table.c[column].type)}")
        inserts.append(
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({', '.join(arrays)}) ON CONFLICT DO NOTHING"
        )
    ctes = ", ".join(f"w{i} AS ({insert})" for i, insert in enumerate(inserts[:-1]))
    return f"WITH {ctes} {inserts[-1]}" if ctes else inserts[-1]


def _array_type(column_type: TypeEngine) -> str:
    # Strings travel as text[]: the insert's own cast to varchar(n) then refuses a value too long,
    # as a plain insert would (an explicit varchar(n)[] cast would silently cut it).
    for kind, name in (
        (UtcDateTime, "timestamptz[]"),
        (Uuid, "uuid[]"),
        (Boolean, "bool[]"),
        (Integer, "int4[]"),
        (Float, "float8[]"),
        (Date, "date[]"),
        (String, "text[]"),
    ):
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no array type for a read-model column of type {column_type!r}")
