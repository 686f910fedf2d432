"""`safetymon rebuild` (services/dsmb/rebuild.py) and the projector's writes, on the real broker
and PostgreSQL: the read models rebuilt from the log equal, row for row, the rows of the same
events inserted one by one with SQLAlchemy (what the projector did before it sent each column as
one array); redelivered copies change nothing, an undecodable record is skipped and counted, a
value too long for its column is refused with nothing of its write kept, and SQLite (the demo's
database) gets the same rows."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.db import create_engine, upgrade_schema
from services.demo.databases import scratch_database
from services.dsmb import readmodels as rm
from services.dsmb import rebuild as rebuild_module
from services.dsmb.projection import rows_of
from services.dsmb.projector import Projector
from services.dsmb.rebuild import rebuild
from shared.ae_dictionary import load_ae_dictionary
from shared.events import (
    AlertAcknowledged,
    AlertRaised,
    DoseDecisionMade,
    Envelope,
    LabGraded,
    SafetySignalDetected,
    encode_event,
)
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS
from tests.integration import dsmb_scenario as scenario
from tests.support import produce

pytestmark = pytest.mark.integration
DICTIONARY = load_ae_dictionary()
Tables = dict[str, list[tuple[Any, ...]]]


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    async with scratch_database(postgres_url, "safetymon_rebuild") as url:
        await asyncio.to_thread(upgrade_schema, url)
        engine = create_engine(url)
        yield engine
        await engine.dispose()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[Envelope]:
    """The hand-checked scenario, its later correction and retraction, and an acknowledgement."""
    with scenario.derived_clock(monkeypatch) as clock:
        ledgers: dict = {}
        clinical = scenario.clinical_before_cutoff()
        before = scenario.grade_all(clinical, ledgers, clock)
        alert = next(e for e in before if isinstance(e, AlertRaised))
        after = scenario.grade_all(scenario.clinical_after_cutoff(clinical), ledgers, clock)
    return [*before, scenario.acknowledgement(alert, minutes=30), *after]


def topic_of(event: Envelope) -> str:
    if isinstance(event, AlertRaised | AlertAcknowledged):
        return ALERTS
    if isinstance(event, LabGraded | DoseDecisionMade | SafetySignalDetected):
        return ASSESSMENTS
    return CLINICAL_EVENTS


async def all_rows(engine: AsyncEngine) -> Tables:
    async with engine.connect() as connection:
        return {
            table.name: sorted(tuple(row) for row in await connection.execute(select(table)))
            for table in rm.READ_MODELS
        }


async def inserted_one_by_one(engine: AsyncEngine, events: list[Envelope]) -> Tables:
    """The reference: every row of the events through SQLAlchemy's own insert, row by row."""
    async with engine.begin() as connection:
        for table in rm.READ_MODELS:
            await connection.execute(table.delete())
        for event in events:
            for table, row in rows_of(event, DICTIONARY):
                statement = postgresql.insert(table).on_conflict_do_nothing()
                await connection.execute(statement, row)
    return await all_rows(engine)


async def test_a_rebuild_from_the_log_equals_the_events_inserted_one_by_one(
    settings: Settings,
    engine: AsyncEngine,
    events: list[Envelope],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many small writes, so one is in flight while the next records are decoded.
    monkeypatch.setattr(rebuild_module, "ROWS_PER_WRITE", 7)
    await ensure_topics(settings)
    redelivered = events[:10]
    for topic in (CLINICAL_EVENTS, ASSESSMENTS, ALERTS):
        records = [
            (e.subject_id.encode(), encode_event(e))
            for e in events + redelivered
            if topic_of(e) == topic
        ]
        if topic == CLINICAL_EVENTS:
            records.append((b"GZ01-001", b'{"event_type": "NotAnEvent"}'))
        await produce(settings.kafka_bootstrap_servers, settings.topic(topic), records)
    await Projector(engine, DICTIONARY).project(events[:5])  # rows a rebuild must replace

    result = await rebuild(settings, engine)
    rebuilt = await all_rows(engine)
    again = await rebuild(settings, engine)

    assert (result.events, result.undecodable) == (len(events) + len(redelivered), 1)
    assert (again.events, again.undecodable, again.rows) == (result.events, 1, result.rows)
    assert await all_rows(engine) == rebuilt
    assert await inserted_one_by_one(engine, events) == rebuilt
    assert rebuilt["dsmb_retractions"] and rebuilt["dsmb_acknowledgements"]
    assert sum(len(rows) for rows in rebuilt.values()) > 30


async def test_a_value_too_long_for_its_column_is_refused_and_nothing_of_its_write_kept(
    engine: AsyncEngine, events: list[Envelope]
) -> None:
    projector = Projector(engine, DICTIONARY)
    rows = [row for event in events for row in rows_of(event, DICTIONARY)]
    table, first = rows[0]
    last = max(i for i, (t, _) in enumerate(rows) if t is rm.lab_grades)
    rows[last] = (rm.lab_grades, rows[last][1] | {"site_id": "X" * 51})  # VARCHAR(50)

    with pytest.raises(DBAPIError, match="too long"):
        await projector.write(rows)

    assert all(not table_rows for table_rows in (await all_rows(engine)).values())
    await projector.write([(table, first)])
    assert len((await all_rows(engine))[table.name]) == 1


async def test_sqlite_gets_the_same_rows_as_postgresql(
    engine: AsyncEngine, events: list[Envelope], tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/dsmb.db"
    await asyncio.to_thread(upgrade_schema, url)
    lite = create_engine(url)
    try:
        for target in (engine, lite):
            projector = Projector(target, DICTIONARY)
            await projector.project(events)
            await projector.project(events[:10])  # redelivered: nothing changes

        assert await all_rows(lite) == await all_rows(engine)
    finally:
        await lite.dispose()
