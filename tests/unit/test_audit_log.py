"""The audit log: entries recorded and exported in time order, filtered; never changed."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.audit import AuditLog
from services.alerts.auth import Role, User
from services.alerts.db import create_engine, upgrade_schema

CHINA = timezone(timedelta(hours=8))
T0 = datetime(2025, 5, 10, 9, 0, tzinfo=UTC)
PHYSICIAN = User("physician-01", Role.SAFETY_PHYSICIAN)
VIEWER = User("viewer-01", Role.VIEWER)
SITE = User("site-gz01", Role.SITE_USER, "GZ01")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path}/alerts.db"
    await asyncio.to_thread(upgrade_schema, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


class Clock:
    """Gives the times it is handed, in order."""

    def __init__(self, times: list[datetime]) -> None:
        self.times: Iterator[datetime] = iter(times)

    def __call__(self) -> datetime:
        return next(self.times)


async def test_an_entry_is_recorded_and_exported_whole(engine: AsyncEngine) -> None:
    log = AuditLog(engine, clock=Clock([T0]))
    alert_id = uuid.uuid4()
    audit_id = await log.record(
        PHYSICIAN,
        "acknowledge",
        target=alert_id,
        subject_id="GZ01-005",
        site_id="GZ01",
        client_ip="10.0.0.7",
        detail={"comment": "Site contacted", "via": "token", "grades": [3, 4]},
    )
    assert await log.export() == [
        {
            "audit_id": audit_id,
            "at": T0,
            "user_id": "physician-01",
            "role": "safety-physician",
            "action": "acknowledge",
            "target": str(alert_id),
            "subject_id": "GZ01-005",
            "site_id": "GZ01",
            "client_ip": "10.0.0.7",
            "detail": {"comment": "Site contacted", "via": "token", "grades": [3, 4]},
        }
    ]


async def test_optional_fields_may_be_absent_and_the_time_is_now_in_utc(
    engine: AsyncEngine,
) -> None:
    log = AuditLog(engine)
    before = datetime.now(UTC)
    await log.record(VIEWER, "sign-in")
    (entry,) = await log.export()
    assert entry["target"] is entry["subject_id"] is entry["detail"] is entry["client_ip"] is None
    assert entry["at"].tzinfo is not None and before <= entry["at"] <= datetime.now(UTC)


async def test_export_is_in_time_order_whatever_the_order_of_writing(
    engine: AsyncEngine,
) -> None:
    times = [T0 + timedelta(minutes=m) for m in (30, 10, 20)]
    # The same instant written with an offset sorts as that instant.
    times.append((T0 + timedelta(minutes=15)).astimezone(CHINA))
    log = AuditLog(engine, clock=Clock(times))
    for n in range(4):
        await log.record(VIEWER, "alert.view", target=f"a{n}")
    exported = await log.export()
    assert [e["target"] for e in exported] == ["a1", "a3", "a2", "a0"]
    assert [e["at"] for e in exported] == sorted(times)


async def test_entries_at_the_same_instant_come_out_in_a_stable_order(
    engine: AsyncEngine,
) -> None:
    log = AuditLog(engine, clock=Clock([T0] * 5))
    ids = [await log.record(VIEWER, "alert.view", target=str(n)) for n in range(5)]
    exported = await log.export()
    assert [e["audit_id"] for e in exported] == sorted(ids)
    assert await log.export() == exported


async def test_since_is_inclusive_and_until_exclusive(engine: AsyncEngine) -> None:
    log = AuditLog(engine, clock=Clock([T0 + timedelta(hours=h) for h in range(5)]))
    for h in range(5):
        await log.record(VIEWER, "alert.view", target=f"h{h}")

    async def targets(**bounds: datetime) -> list[str]:
        return [e["target"] for e in await log.export(**bounds)]

    assert await targets(since=T0 + timedelta(hours=1)) == ["h1", "h2", "h3", "h4"]
    assert await targets(until=T0 + timedelta(hours=2)) == ["h0", "h1"]
    assert await targets(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)) == [
        "h1",
        "h2",
    ]
    # Bounds given in another time zone mean the same instants.
    assert await targets(since=(T0 + timedelta(hours=3)).astimezone(CHINA)) == ["h3", "h4"]
    assert await targets(since=T0 + timedelta(hours=9)) == []


async def test_filters_and_limit(engine: AsyncEngine) -> None:
    log = AuditLog(engine, clock=Clock([T0 + timedelta(minutes=m) for m in range(5)]))
    await log.record(PHYSICIAN, "acknowledge", subject_id="GZ01-005", site_id="GZ01")
    await log.record(VIEWER, "alert.view", subject_id="GZ01-005", site_id="GZ01")
    await log.record(SITE, "alert.view", subject_id="GZ01-007", site_id="GZ01")
    await log.record(PHYSICIAN, "resolve", subject_id="SH02-012", site_id="SH02")
    await log.record(PHYSICIAN, "alert.view", subject_id="SH02-012", site_id="SH02")

    async def actions(**filters: object) -> list[tuple[str, str]]:
        return [(e["user_id"], e["action"]) for e in await log.export(**filters)]

    assert await actions(user_id="physician-01") == [
        ("physician-01", "acknowledge"),
        ("physician-01", "resolve"),
        ("physician-01", "alert.view"),
    ]
    assert await actions(action="alert.view", site_id="GZ01") == [
        ("viewer-01", "alert.view"),
        ("site-gz01", "alert.view"),
    ]
    assert await actions(subject_id="SH02-012") == [
        ("physician-01", "resolve"),
        ("physician-01", "alert.view"),
    ]
    assert await actions(limit=2) == [("physician-01", "acknowledge"), ("viewer-01", "alert.view")]
    assert await actions(user_id="nobody") == []
    with pytest.raises(ValueError, match="limit"):
        await log.export(limit=0)


@pytest.mark.parametrize("action", ["", "Acknowledge", "drop table", "x" * 51, "1st"])
async def test_a_bad_action_is_refused_and_nothing_written(
    engine: AsyncEngine, action: str
) -> None:
    log = AuditLog(engine)
    with pytest.raises(ValueError, match="audit action"):
        await log.record(VIEWER, action)
    assert await log.export() == []


async def test_a_detail_that_is_not_json_is_refused(engine: AsyncEngine) -> None:
    log = AuditLog(engine)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await log.record(VIEWER, "alert.view", detail={"when": datetime.now(UTC)})
    with pytest.raises(TypeError, match="mapping"):
        await log.record(VIEWER, "alert.view", detail=["a list"])  # type: ignore[arg-type]
    assert await log.export() == []


async def test_the_log_is_append_only(engine: AsyncEngine) -> None:
    log = AuditLog(engine, clock=Clock([T0]))
    await log.record(PHYSICIAN, "acknowledge", target="alert-1")
    public = {name for name in dir(log) if not name.startswith("_")}
    assert public == {"engine", "record", "export"}
    for statement in ("UPDATE audit_log SET user_id = 'someone-else'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="audit_log is append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    (entry,) = await log.export()
    assert entry["user_id"] == "physician-01"
