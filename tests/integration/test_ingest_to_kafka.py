"""Ingest against the real broker: 202 means the event is in Kafka, keyed by subject."""

import pytest

from services.ingest.app import create_app
from shared.events import LabResultReported
from shared.settings import Settings
from shared.topics import CLINICAL_EVENTS
from tests.support import INGEST_AUTH, events_of, read_topic, running

pytestmark = pytest.mark.integration


def lab_body(subject: str = "GZ01-005", **overrides) -> dict:
    return {
        "subject_id": subject,
        "site_id": "GZ01",
        "test": "ANC",
        "value": 900,
        "unit": "/mm3",
        "reference_low": 1800,
        "reference_high": 6300,
        "collected_at": "2025-04-14T07:30:00+08:00",
        "visit": {"cycle": 2, "day": 1},
        "source_system": "lis-gz01",
        "source_message_id": f"{subject}-C2D1-ANC",
    } | overrides


async def test_an_accepted_lab_result_is_in_kafka_keyed_by_subject(settings: Settings) -> None:
    async with running(create_app(settings), INGEST_AUTH) as client:
        response = await client.post("/v1/labs", json=lab_body())
    assert response.status_code == 202
    (event_id,) = response.json()["event_ids"]

    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS), lambda r: len(r) >= 1
    )
    (record,) = records
    assert record.key == b"GZ01-005"
    assert dict(record.headers)["event_type"] == b"LabResultReported"
    (event,) = events_of(records)
    assert isinstance(event, LabResultReported)
    assert str(event.event_id) == event_id
    assert (event.payload.si.value, event.payload.si.unit) == (0.9, "10*9/L")
    assert event.payload.reported.value == 900


async def test_a_resent_message_is_the_same_event(settings: Settings) -> None:
    async with running(create_app(settings), INGEST_AUTH) as client:
        first = await client.post("/v1/labs", json=lab_body())
        again = await client.post("/v1/labs", json=lab_body())
    assert first.json()["event_ids"] == again.json()["event_ids"]


async def test_a_batch_with_one_bad_item_is_refused_whole_and_nothing_is_published(
    settings: Settings,
) -> None:
    bad_batch = [lab_body("GZ01-001"), lab_body("GZ01-002", unit="g/dL")]
    async with running(create_app(settings), INGEST_AUTH) as client:
        refused = await client.post("/v1/labs/batch", json=bad_batch)
        sentinel = await client.post("/v1/labs", json=lab_body("GZ01-099"))
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["field"] == "1.unit"
    assert "'g/dL' is not a unit for NEUT" in error["reason"]
    assert sentinel.status_code == 202

    records = await read_topic(
        settings.kafka_bootstrap_servers,
        settings.topic(CLINICAL_EVENTS),
        lambda r: any(x.key == b"GZ01-099" for x in r),
    )
    assert [record.key for record in records] == [b"GZ01-099"]


async def test_a_batch_keeps_each_subjects_order(settings: Settings) -> None:
    batch = [
        lab_body("GZ01-007", value=v, source_message_id=f"m-{i}")
        for i, v in enumerate([3000, 2500, 1200, 900, 1600])
    ]
    async with running(create_app(settings), INGEST_AUTH) as client:
        response = await client.post("/v1/labs/batch", json=batch)
    assert response.status_code == 202 and response.json()["accepted"] == 5

    records = await read_topic(
        settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS), lambda r: len(r) >= 5
    )
    assert [e.payload.reported.value for e in events_of(records)] == [3000, 2500, 1200, 900, 1600]


async def test_the_api_is_documented(settings: Settings) -> None:
    async with running(create_app(settings), INGEST_AUTH) as client:
        spec = (await client.get("/openapi.json")).json()
        health = await client.get("/health")
    assert {"/v1/labs", "/v1/labs/batch", "/v1/enrolments", "/v1/adverse-events", "/v1/doses"} <= (
        set(spec["paths"])
    )
    assert health.json()["checks"] == {"kafka": True}
