"""End to end: the services as processes, the real Kafka broker, PostgreSQL, an SMTP server.

A day-1 lab with ANC 0.9 x10^9/L posted to ingest over HTTP must become, within 10 s, an alert row
in PostgreSQL and an email in the mailbox. The DSMB service's read models must give the same
rollups for a cut-off after a later correction, and equal, row for row, a rebuild from the log.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.db import alerts, create_engine
from services.dsmb.readmodels import READ_MODELS
from services.dsmb.rebuild import rebuild
from tests.e2e.conftest import Pipeline, live_pipeline
from tests.support import INGEST_AUTH, PHYSICIAN, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def pipeline(kafka_bootstrap: str, postgres_url: str) -> AsyncIterator[Pipeline]:
    async with live_pipeline(kafka_bootstrap, postgres_url, "e2e") as running:
        yield running


def day1_lab(subject: str, anc: float) -> dict:
    return {
        "subject_id": subject,
        "site_id": "GZ01",
        "test": "ANC",
        "value": anc,
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": "2026-11-20T07:30:00+08:00",
        "visit": {"cycle": 2, "day": 1},
        "source_system": "lis-gz01",
        "source_message_id": f"{subject}-C2D1-ANC",
    }


async def alert_rows(database_url: str, subject: str) -> list[dict]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            query = select(alerts).where(alerts.c.subject_id == subject)
            return [dict(row._mapping) for row in (await conn.execute(query)).all()]
    finally:
        await engine.dispose()


async def test_day1_neutropenia_reaches_postgres_and_the_mailbox_within_10_s(
    pipeline: Pipeline,
) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(headers=INGEST_AUTH) as client:
        response = await client.post(
            f"{pipeline.urls['ingest']}/v1/labs", json=day1_lab("GZ01-101", 0.9)
        )
    assert response.status_code == 202

    rows = await eventually(lambda: alert_rows(pipeline.database_url, "GZ01-101"), 10.0)
    stored_after = time.monotonic() - started
    emailed = await eventually(lambda: pipeline.sink.count >= 1, 10.0 - stored_after)
    emailed_after = time.monotonic() - started
    print(f"\nANC 0.9 -> alert row in {stored_after:.2f} s, email in {emailed_after:.2f} s")

    assert rows, "no alert row in PostgreSQL within 10 s"
    (row,) = rows
    assert (row["rule_id"], row["severity"]) == ("D1-ANC-HOLD", "high")
    assert emailed and emailed_after <= 10.0, "no email within 10 s"
    email = pipeline.sink.messages[0]
    assert email["To"] == "safety-desk@example.org"
    assert "GZ01-101 C2D1: ANC 0.9" in email["Subject"]


async def test_bad_input_is_refused_and_the_pipeline_keeps_working(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(headers=INGEST_AUTH) as client:
        refused = await client.post(
            f"{pipeline.urls['ingest']}/v1/labs", json=day1_lab("GZ01-102", 0.9) | {"unit": "mg/dL"}
        )
        accepted = await client.post(
            f"{pipeline.urls['ingest']}/v1/labs", json=day1_lab("GZ01-103", 0.4)
        )
    assert refused.status_code == 422
    assert accepted.status_code == 202
    assert refused.json()["detail"][0]["field"] == "unit"
    rows = await eventually(lambda: alert_rows(pipeline.database_url, "GZ01-103"), 10.0)
    assert rows and rows[0]["severity"] == "critical"  # grade 4 neutropenia on day 1
    assert await alert_rows(pipeline.database_url, "GZ01-102") == []


async def test_every_service_exposes_health_and_metrics(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient() as client:
        for name, url in pipeline.urls.items():
            assert (await client.get(f"{url}/health")).status_code == 200, name
            metrics = (await client.get(f"{url}/metrics/")).text
            consumer = {"ingest": None, "dsmb": "dsmb-clinical"}.get(name, name)
            if consumer:  # a sample line, not just the metric's HELP/TYPE
                assert (
                    f'safetymon_consumed_messages_total{{outcome="processed",service="{consumer}"}}'
                    in metrics
                ), name
        ingest_metrics = (await client.get(f"{pipeline.urls['ingest']}/metrics/")).text
    assert (
        'safetymon_ingest_events_total{event_type="LabResultReported",site="GZ01",source="json"}'
        in ingest_metrics
    )


async def test_one_correlation_id_follows_a_result_through_every_services_logs(
    pipeline: Pipeline,
) -> None:
    correlation_id = str(uuid.uuid4())
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{pipeline.urls['ingest']}/v1/labs",
            json=day1_lab("GZ01-106", 0.8),
            headers=INGEST_AUTH | {"X-Correlation-ID": correlation_id},
        )
    assert response.status_code == 202
    assert response.headers["X-Correlation-ID"] == correlation_id

    def lines_of(service: str) -> list[dict]:
        text = (pipeline.services.log_dir / f"{service}.log").read_text()
        lines = [json.loads(line) for line in text.splitlines() if line]  # every line is JSON
        return [line for line in lines if line.get("correlation_id") == correlation_id]

    await eventually(lambda: all(lines_of(s) for s in ("ingest", "grader", "alerts", "dsmb")), 10)
    assert {line["service"] for s in pipeline.urls for line in lines_of(s)} == {
        "ingest",
        "grader",
        "alerts",
        "dsmb",
    }
    handled = {
        (line["service"], line.get("event_type"))
        for s in ("grader", "alerts")
        for line in lines_of(s)
    }
    assert ("grader", "LabResultReported") in handled
    assert ("alerts", "AlertRaised") in handled


async def test_a_corrected_result_retracts_the_alert_it_raised(pipeline: Pipeline) -> None:
    ingest = pipeline.urls["ingest"]
    async with httpx.AsyncClient(headers=INGEST_AUTH) as client:
        posted = await client.post(f"{ingest}/v1/labs", json=day1_lab("GZ01-104", 0.9))
        (lab_event_id,) = posted.json()["event_ids"]
        assert await eventually(lambda: alert_rows(pipeline.database_url, "GZ01-104"), 10.0)
        correction = await client.post(
            f"{ingest}/v1/lab-corrections",
            json={
                "subject_id": "GZ01-104",
                "site_id": "GZ01",
                "corrected_event_id": lab_event_id,
                "reason": "transcription error: 2.0 was keyed as 0.9",
                "corrected": day1_lab("GZ01-104", 2.0),
                "source_system": "edc",
                "source_message_id": "GZ01-104-fix-1",
            },
        )
    assert correction.status_code == 202

    async def retracted() -> list[dict]:
        rows = await alert_rows(pipeline.database_url, "GZ01-104")
        return [row for row in rows if row["status"] == "retracted"]

    assert await eventually(retracted, 10.0), "the alert was not retracted within 10 s"


async def test_the_subject_timeline_shows_the_lab_its_grade_the_decision_and_the_alert(
    pipeline: Pipeline,
) -> None:
    url = f"{pipeline.urls['alerts']}/v1/subjects/GZ01-101/timeline"
    async with httpx.AsyncClient(headers=PHYSICIAN) as client:
        items = (await client.get(url)).json()
        missing = await client.get(f"{pipeline.urls['alerts']}/v1/subjects/NOBODY-1/timeline")
    kinds = [item["kind"] for item in items]
    assert {"lab", "dose decision", "alert"} <= set(kinds)
    (lab,) = [item for item in items if item["kind"] == "lab"]
    assert lab["text"] == "ANC 0.9 x10^9/L" and lab["visit"] == "C2D1"
    assert lab["grades"] == ["Neutrophil count decreased grade 3"]
    assert missing.status_code == 404


async def projection_settled(pipeline: Pipeline, client: httpx.AsyncClient) -> dict[str, int]:
    """The DSMB read models' row counts once they hold every stored alert and stop moving."""
    url = f"{pipeline.urls['dsmb']}/v1/dsmb/read-models"
    last: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counts = (await client.get(url)).json()
        engine = create_engine(pipeline.database_url)
        try:
            async with engine.connect() as conn:
                stored = len((await conn.execute(select(alerts.c.alert_id))).all())
        finally:
            await engine.dispose()
        if counts == last and counts["dsmb_alerts"] >= stored:
            return counts
        last = counts
        await asyncio.sleep(1.0)
    raise AssertionError(f"the DSMB projection did not settle: {last}")


async def test_a_dsmb_cutoff_report_is_unchanged_by_a_later_correction(pipeline: Pipeline) -> None:
    ingest, dsmb = pipeline.urls["ingest"], pipeline.urls["dsmb"]
    async with httpx.AsyncClient(timeout=30, headers=INGEST_AUTH) as client:
        lab = await client.post(f"{ingest}/v1/labs", json=day1_lab("GZ01-110", 0.8))
        (lab_event_id,) = lab.json()["event_ids"]
        assert await eventually(lambda: alert_rows(pipeline.database_url, "GZ01-110"), 10.0)
        await projection_settled(pipeline, client)
        cutoff = datetime.now(UTC).isoformat()
        before = (await client.get(f"{dsmb}/v1/dsmb/rollups", params={"cutoff": cutoff})).json()

        correction = await client.post(
            f"{ingest}/v1/lab-corrections",
            json={
                "subject_id": "GZ01-110",
                "site_id": "GZ01",
                "corrected_event_id": lab_event_id,
                "reason": "re-run on a fresh sample",
                "corrected": day1_lab("GZ01-110", 2.4),
                "source_system": "edc",
                "source_message_id": "GZ01-110-fix-1",
            },
        )
        assert correction.status_code == 202
        await eventually(lambda: retracted_alerts(pipeline, "GZ01-110"), 10.0)
        await projection_settled(pipeline, client)
        again = (await client.get(f"{dsmb}/v1/dsmb/rollups", params={"cutoff": cutoff})).json()
        now = (await client.get(f"{dsmb}/v1/dsmb/rollups/dose_modifications")).json()
        bad = await client.get(f"{dsmb}/v1/dsmb/rollups", params={"cutoff": "2026-06-30T00:00"})
        unknown = await client.get(f"{dsmb}/v1/dsmb/rollups/no-such-table")

    assert again == before
    holds = {tuple(row[:3]): row[3] for row in table(before, "dose_modifications")["rows"]}
    holds_now = {tuple(row[:3]): row[3] for row in now["rows"]}
    for drug in ("nab-paclitaxel", "cisplatin"):  # the 0.8 held both; the corrected 2.4 neither
        assert holds_now[(drug, "hold", "D1-ANC-HOLD")] == holds[(drug, "hold", "D1-ANC-HOLD")] - 1
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "cutoff"
    assert "no UTC offset" in bad.json()["detail"]["reason"]
    assert unknown.status_code == 404


def table(tables: list[dict], name: str) -> dict:
    return next(t for t in tables if t["name"] == name)


async def retracted_alerts(pipeline: Pipeline, subject: str) -> list[dict]:
    return [
        r for r in await alert_rows(pipeline.database_url, subject) if r["status"] == "retracted"
    ]


async def test_the_read_models_equal_a_rebuild_from_the_log_row_for_row(
    pipeline: Pipeline,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        await projection_settled(pipeline, client)
    engine = create_engine(pipeline.database_url)
    try:
        live = await read_model_rows(engine)
        result = await rebuild(pipeline.settings, engine)
        rebuilt = await read_model_rows(engine)
    finally:
        await engine.dispose()

    assert result.events > 0 and result.undecodable == 0
    assert sum(len(rows) for rows in live.values()) > 20
    assert rebuilt == live


async def read_model_rows(engine: AsyncEngine) -> dict[str, list[tuple]]:
    async with engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in (await conn.execute(select(table))).all())
            for table in READ_MODELS
        }


async def test_services_shut_down_cleanly_on_sigterm(pipeline: Pipeline) -> None:
    started = time.monotonic()
    exit_codes = await asyncio.to_thread(pipeline.services.stop)
    assert exit_codes == {"alerts": 0, "dsmb": 0, "grader": 0, "ingest": 0}
    assert time.monotonic() - started < 30
    for name in exit_codes:
        log = (pipeline.services.log_dir / f"{name}.log").read_text()
        assert "Application shutdown complete" in log, name
