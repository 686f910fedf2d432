"""`safetymon rebuild`: empty the DSMB read models and project every event of the log again."""

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from services.dsmb.projector import Projector
from shared.ae_dictionary import load_ae_dictionary
from shared.events import EventDecodeError, decode_event
from shared.kafka import read_to_end
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

PROJECTED_TOPICS = (CLINICAL_EVENTS, ASSESSMENTS, ALERTS)


@dataclass(frozen=True)
class RebuildResult:
    events: int
    undecodable: int  # dead-lettered when first consumed; skipped again
    rows: int
    seconds: float


async def rebuild(settings: Settings, engine: AsyncEngine) -> RebuildResult:
    projector = Projector(engine, load_ae_dictionary())
    started = time.perf_counter()
    await projector.clear()
    events = undecodable = rows = 0
    for topic in PROJECTED_TOPICS:
        async for batch in read_to_end(settings, settings.topic(topic)):
            decoded = []
            for record in batch:
                try:
                    decoded.append(decode_event(record.value))
                except EventDecodeError:
                    undecodable += 1
            rows += await projector.project(decoded)
            events += len(decoded)
    return RebuildResult(events, undecodable, rows, time.perf_counter() - started)
