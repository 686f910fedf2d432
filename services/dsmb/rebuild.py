"""`safetymon rebuild`: empty the DSMB read models and project every event of the log again."""

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.dsmb.projection import Rows, rows_of
from services.dsmb.projector import Projector
from shared.ae_dictionary import load_ae_dictionary
from shared.events import EventDecodeError, decode_event
from shared.kafka import read_to_end
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

PROJECTED_TOPICS = (CLINICAL_EVENTS, ASSESSMENTS, ALERTS)
# Rows per write: large enough that the per-statement cost is small against the rows' own.
ROWS_PER_WRITE = 5000


@dataclass(frozen=True)
class RebuildResult:
    events: int
    undecodable: int  # dead-lettered when first consumed; skipped again
    rows: int
    seconds: float


async def rebuild(settings: Settings, engine: AsyncEngine) -> RebuildResult:
    with _objects_so_far_frozen():
        return await _rebuild(settings, engine)


async def _rebuild(settings: Settings, engine: AsyncEngine) -> RebuildResult:
    dictionary = load_ae_dictionary()
    projector = Projector(engine, dictionary)
    started = time.perf_counter()
    await projector.clear()
    events = undecodable = rows = 0
    pending: Rows = []
    writing: asyncio.Task[None] | None = None
    async with projector.connection() as connection:
        try:
            for topic in PROJECTED_TOPICS:
                async for batch in read_to_end(settings, settings.topic(topic)):
                    for record in batch:
                        try:
                            event = decode_event(record.value)
                        except EventDecodeError:
                            undecodable += 1
                            continue
                        # Its rows at once, so the decoded event is freed at once.
                        pending += rows_of(event, dictionary)
                        events += 1
                    if len(pending) >= ROWS_PER_WRITE:
                        # One write in flight while the next records are read and decoded:
                        # the database inserts while this process decodes. Rows do not depend
                        # on each other, so the order of the writes does not matter.
                        if writing is not None:
                            await writing
                        writing = asyncio.create_task(projector.write(pending, connection))
                        rows, pending = rows + len(pending), []
                    # Buffered records come back without a pause: let the write and the
                    # consumer's fetcher run.
                    await asyncio.sleep(0)
            if writing is not None:
                await writing
            await projector.write(pending, connection)
            rows += len(pending)
        except BaseException:
            if writing is not None:
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
            raise
    return RebuildResult(events, undecodable, rows, time.perf_counter() - started)


@contextmanager
def _objects_so_far_frozen() -> Iterator[None]:
    """The objects alive now (modules, schemas, ...) left out of the cyclic collector's full
    collections for the rebuild: holding a batch of rows, the rebuild triggers one every few
    thousand events, and scanning those objects each time was a sixth of its CPU time."""
    if gc.get_freeze_count():  # frozen by the process already: not ours to unfreeze
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
