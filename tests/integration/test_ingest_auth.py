"""Ingest's senders through the app on the real broker: every submission endpoint wants a
sending system's token (401 without one), and a token scoped to GZ01 cannot put an SH02 event on
the topic in any format: JSON 403 naming the site, FHIR an OperationOutcome 403 "forbidden",
HL7 v2 over HTTP an AR acknowledgement (403), SDTM a rejected row while the others go through.
Nothing of a refused request is published (a sentinel posted after it is the only record)."""

import hl7
import httpx
import pytest
from fastapi.routing import APIRoute

from services.ingest.app import create_app
from services.ingest.interop.routes import FHIR_MEDIA_TYPE, HL7_MEDIA_TYPE
from shared.events import Envelope
from shared.settings import Settings
from shared.topics import CLINICAL_EVENTS
from tests.interop_messages import COLLECTED, fhir_observation, hl7_oru
from tests.support import INGEST_AUTH, LIS_GZ01, LIS_SH02, events_of, read_topic, running

pytestmark = pytest.mark.integration

# From the shipped enrolment map (interop/NCT05173246.enrolment.csv).
GZ01 = {"subject": "GZ01-001", "patient": "GZ0700037", "usubjid": "NCT05173246-GZ01-001"}
SH02 = {"subject": "SH02-006", "patient": "SH0700222", "usubjid": "NCT05173246-SH02-006"}


def lab(subject: str, site: str, message_id: str, **overrides: object) -> dict:
    return {
        "subject_id": subject,
        "site_id": site,
        "test": "ANC",
        "value": 0.9,
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": COLLECTED,
        "visit": {"cycle": 2, "day": 1},
        "source_message_id": message_id,
    } | overrides


def sdtm_row(usubjid: str, seq: int) -> dict:
    return {
        "STUDYID": "NCT05173246",
        "DOMAIN": "LB",
        "USUBJID": usubjid,
        "LBSEQ": seq,
        "LBTESTCD": "NEUT",
        "LBTEST": "Neutrophils",
        "LBSTRESC": "0.9",
        "LBSTRESN": 0.9,
        "LBSTRESU": "10^9/L",
        "LBSTNRLO": 1.8,
        "LBSTNRHI": 6.3,
        "VISIT": "CYCLE 2 DAY 1",
        "LBDTC": "2026-11-20T07:30",
    }


async def published_up_to_sentinel(
    settings: Settings, client: httpx.AsyncClient, sentinel_id: str
) -> list[Envelope]:
    """Post a GZ01 sentinel as lis-gz01; every event on the topic once it is there."""
    sentinel = lab(GZ01["subject"], "GZ01", sentinel_id)
    assert (await client.post("/v1/labs", json=sentinel, headers=LIS_GZ01)).status_code == 202
    records = await read_topic(
        settings.kafka_bootstrap_servers,
        settings.topic(CLINICAL_EVENTS),
        lambda r: any(e.source.message_id == sentinel_id for e in events_of(r)),
    )
    return events_of(records)


# -- authentication --------------------------------------------------------------------------


async def test_every_submission_endpoint_wants_a_senders_token(settings: Settings) -> None:
    app = create_app(settings)
    submissions = [
        route.path.replace("{domain}", "lb")
        for route in app.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert {"/v1/labs", "/v1/labs/batch", "/v1/hl7", "/v1/fhir", "/v1/sdtm/rows"} <= set(
        submissions
    )
    assert all(path.startswith("/v1/") for path in submissions)
    async with running(app) as client:
        for path in submissions:
            missing = await client.post(path, content=b"{}")
            assert missing.status_code == 401, path
            assert missing.headers["WWW-Authenticate"].startswith("Bearer"), path
            wrong = await client.post(path, content=b"{}", headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401, path
            assert wrong.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', path
            basic = await client.post(path, json={}, headers={"Authorization": "Basic eDp5"})
            assert basic.status_code == 401, path
        for path in ("/health", "/live", "/openapi.json", "/docs", "/metrics/"):
            assert (await client.get(path)).status_code == 200, path
        spec = (await client.get("/openapi.json")).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_the_senders_system_is_the_events_source_when_none_is_named(
    settings: Settings,
) -> None:
    async with running(create_app(settings)) as client:
        unnamed = await client.post(
            "/v1/labs", json=lab("GZ01-001", "GZ01", "m-1"), headers=LIS_GZ01
        )
        named = await client.post(
            "/v1/labs",
            json=lab("GZ01-001", "GZ01", "m-2", source_system="lis-gz01-backup"),
            headers=INGEST_AUTH,
        )
        assert unnamed.status_code == named.status_code == 202
        events = await published_up_to_sentinel(settings, client, "sentinel")
    sources = {e.source.message_id: e.source.system for e in events}
    assert sources["m-1"] == "lis-gz01"
    assert sources["m-2"] == "lis-gz01-backup"


# -- site scope, format by format ------------------------------------------------------------


async def test_json_an_sh02_event_from_the_gz01_sender_is_403_and_nothing_is_published(
    settings: Settings,
) -> None:
    batch = [lab(GZ01["subject"], "GZ01", "ok-1"), lab(SH02["subject"], "SH02", "sh-1")]
    async with running(create_app(settings)) as client:
        refused = await client.post("/v1/labs/batch", json=batch, headers=LIS_GZ01)
        single = await client.post("/v1/labs", json=batch[1], headers=LIS_GZ01)
        events = await published_up_to_sentinel(settings, client, "sentinel-json")
        own_site = await client.post("/v1/labs", json=batch[1], headers=LIS_SH02)
    assert refused.status_code == single.status_code == 403
    assert refused.json()["detail"] == [
        {
            "field": "1.site_id",
            "reason": "sender 'lis-gz01' may not submit for site SH02 (its sites: GZ01)",
            "type": "forbidden_site",
        }
    ]
    assert "site SH02" in single.json()["detail"][0]["reason"]
    assert [e.source.message_id for e in events] == ["sentinel-json"]
    assert own_site.status_code == 202


async def test_fhir_an_sh02_observation_from_the_gz01_sender_is_403_forbidden(
    settings: Settings,
) -> None:
    observation = fhir_observation(SH02["patient"], identifier="fhir-sh-1")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": fhir_observation(GZ01["patient"], identifier="fhir-gz-1")},
            {"resource": observation},
        ],
    }
    content = {"content-type": FHIR_MEDIA_TYPE}
    async with running(create_app(settings)) as client:
        refused = await client.post("/v1/fhir", json=observation, headers=LIS_GZ01 | content)
        mixed = await client.post("/v1/fhir", json=bundle, headers=LIS_GZ01 | content)
        events = await published_up_to_sentinel(settings, client, "sentinel-fhir")
        own_site = await client.post("/v1/fhir", json=observation, headers=LIS_SH02 | content)
    for response in (refused, mixed):
        assert response.status_code == 403, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert {issue["code"] for issue in outcome["issue"]} == {"forbidden"}
        assert "may not submit for site SH02" in outcome["issue"][0]["diagnostics"]
    assert [e.source.message_id for e in events] == ["sentinel-fhir"]  # not even fhir-gz-1
    assert own_site.status_code == 202, own_site.text


async def test_hl7_over_http_an_sh02_message_with_the_gz01_token_is_rejected(
    settings: Settings,
) -> None:
    message = hl7_oru(SH02["patient"], facility="SH02-LAB", control_id="HL7-SH-1")
    content = {"content-type": HL7_MEDIA_TYPE}
    async with running(create_app(settings)) as client:
        refused = await client.post("/v1/hl7", content=message, headers=LIS_GZ01 | content)
        events = await published_up_to_sentinel(settings, client, "sentinel-hl7")
        own_site = await client.post("/v1/hl7", content=message, headers=LIS_SH02 | content)
    assert refused.status_code == 403
    ack = hl7.parse(refused.text)
    assert str(ack.segment("MSA")[1]) == "AR"
    assert "may not submit for site SH02" in str(ack.segment("ERR"))
    assert "OBX" not in refused.text.split("ERR", 1)[0]  # nothing said of the content
    assert [e.source.message_id for e in events] == ["sentinel-hl7"]
    assert own_site.status_code == 200
    assert str(hl7.parse(own_site.text).segment("MSA")[1]) == "AA"


async def test_sdtm_a_row_of_another_site_is_rejected_and_the_others_go_through(
    settings: Settings,
) -> None:
    body = {
        "domain": "LB",
        "utc_offset": "+08:00",
        "rows": [sdtm_row(GZ01["usubjid"], 1), sdtm_row(SH02["usubjid"], 2)],
    }
    async with running(create_app(settings)) as client:
        response = await client.post("/v1/sdtm/rows", json=body, headers=LIS_GZ01)
        events = await published_up_to_sentinel(settings, client, "sentinel-sdtm")
    assert response.status_code == 202, response.text
    report = response.json()
    assert (report["rows"], report["accepted"]) == (2, 1)
    (rejected,) = report["rejected"]
    assert rejected["row"] == 2
    assert "may not submit for site SH02" in rejected["reason"]
    subjects = sorted(e.subject_id for e in events)
    assert subjects == [GZ01["subject"], GZ01["subject"]]  # row 1 and the sentinel
