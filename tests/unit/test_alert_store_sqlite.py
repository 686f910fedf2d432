"""The alert store keeps time zones on SQLite too (the demo's database)."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from services.alerts.db import create_engine, upgrade_schema
from services.alerts.routing import Recipient
from services.alerts.store import AlertStore
from services.ctcae_grader.domain import assess
from tests.unit.factories import ae

CHINA = timezone(timedelta(hours=8))


async def test_a_deadline_written_with_an_offset_reads_back_as_the_same_instant(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/alerts.db"
    await asyncio.to_thread(upgrade_schema, url)
    engine = create_engine(url)
    try:
        store = AlertStore(engine)
        alert, *_ = assess(ae(site_aware_at=datetime(2025, 5, 10, 18, 0, tzinfo=CHINA))).alerts
        await store.record_raised(alert, [Recipient(channel="email", to="desk@example.org")])
        stored = await store.get(alert.payload.alert_id)
    finally:
        await engine.dispose()
    assert stored["due_at"] == datetime(2025, 5, 11, 10, 0, tzinfo=UTC)  # 18:00+08 + 24 h
    assert stored["due_at"].tzinfo is not None


async def test_the_row_alone_is_the_alert_without_its_history_and_deliveries(
    tmp_path: Path,
) -> None:
    """What an email is composed from: one query, the same fields as the full read."""
    url = f"sqlite+aiosqlite:///{tmp_path}/alerts.db"
    await asyncio.to_thread(upgrade_schema, url)
    engine = create_engine(url)
    try:
        store = AlertStore(engine)
        alert, *_ = assess(ae(site_aware_at=datetime(2025, 5, 10, 18, 0, tzinfo=CHINA))).alerts
        await store.record_raised(alert, [Recipient(channel="email", to="desk@example.org")])
        full = await store.get(alert.payload.alert_id)
        row = await store.get(alert.payload.alert_id, history=False)
    finally:
        await engine.dispose()
    assert "history" not in row and "notifications" not in row
    assert row == {k: v for k, v in full.items() if k not in ("history", "notifications")}
    assert row["alert_id"] == alert.payload.alert_id and row["status"] == "raised"
