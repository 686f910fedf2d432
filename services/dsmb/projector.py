"""Writes projected rows to the read models, idempotently: a row whose key is already there is
left alone, so redelivered events and overlapping replays change nothing."""

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.dsmb.projection import Rows, rows_of
from services.dsmb.readmodels import READ_MODELS
from shared.ae_dictionary import AeDictionary
from shared.events import Envelope

_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class Projector:
    def __init__(self, engine: AsyncEngine, dictionary: AeDictionary) -> None:
        self.engine = engine
        self.dictionary = dictionary
        self._insert = _INSERT[engine.dialect.name]

    async def project(self, events: Iterable[Envelope]) -> int:
        """Project `events` in one transaction; returns how many rows they state."""
        rows = [row for event in events for row in rows_of(event, self.dictionary)]
        async with self.engine.begin() as connection:
            await self._write(connection, rows)
        return len(rows)

    async def _write(self, connection: AsyncConnection, rows: Rows) -> None:
        by_table: dict[Table, list[dict]] = defaultdict(list)
        for table, row in rows:
            by_table[table].append(row)
        for table, table_rows in by_table.items():
            statement = self._insert(table).on_conflict_do_nothing()
            await connection.execute(statement, table_rows)

    async def clear(self) -> None:
        """Empty every read model (before a rebuild from the log)."""
        async with self.engine.begin() as connection:
            for table in READ_MODELS:
                await connection.execute(delete(table))
