"""Schemathesis against each service's own OpenAPI document, in process: every operation is called
with requests generated from its schema (valid and invalid), on the app as a server runs it (its
lifespan: the real Kafka broker under a namespace of this test, PostgreSQL in a scratch database).

Checked on every response: no 5xx (`not_a_server_error`), the response matches the schema the
operation documents for its status (`response_schema_conformance`), and a request refused (4xx)
says why (`rejection_has_reason`). Requests carry the credentials a real caller has: a sending
system's token for ingest, a safety physician's for the alert service."""

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import hl7
import httpx
import jsonschema
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans

from services.alerts.app import create_app as create_alerts
from services.ctcae_grader.app import create_app as create_grader
from services.dsmb.app import create_app as create_dsmb
from services.ingest.app import create_app as create_ingest
from services.ingest.interop import fhir
from services.ingest.interop.routes import HL7_MEDIA_TYPE
from shared.settings import Settings
from tests.support import INGEST_AUTH, PHYSICIAN, running
from tests.unit import test_fhir as fhir_builders

pytestmark = [
    pytest.mark.integration,
    # schemathesis's own strategies draw from `random` (its concern, not this suite's).
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
ROOT = Path(__file__).resolve().parents[2]
SENDERS_FILE = str(ROOT / "deploy" / "senders.example.yaml")
# Few examples per operation and mode, not shrunk: the whole file runs in about a minute
# against the real services (a failure is reported as generated, with its curl command).
PER_OPERATION = settings(
    max_examples=15,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


@schemathesis.serializer(HL7_MEDIA_TYPE, "application/x-sas-xport")
def _raw_body(_: schemathesis.SerializationContext, value: Any) -> bytes:
    """An HL7 message or a SAS transport file: the generated text (or bytes) as it is."""
    return value if isinstance(value, bytes) else str(value).encode()


def _reasons(body: Any) -> list[str]:
    """The reasons a refusal gives, in any of the services' shapes: FastAPI's `detail` (text, or
    items with a `reason` or `msg`), ingest's per-field `detail`, an SDTM report's rows, a FHIR
    OperationOutcome's issues."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return [issue.get("diagnostics", "") for issue in body.get("issue", [])]
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, dict):
        return [str(detail.get("reason") or detail.get("msg") or "")]
    if isinstance(detail, list):
        return [str(item.get("reason") or item.get("msg") or "") for item in detail]
    return []


@schemathesis.check
def rejection_has_reason(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A 4xx answer says why, never an empty or bare refusal. HL7 v2 answers with its ACK:
    AE or AR, with an ERR segment per problem."""
    if not 400 <= response.status_code < 500:
        return None
    kind = response.headers.get("content-type", [""])[0]
    if kind.startswith(HL7_MEDIA_TYPE):
        ack = hl7.parse(response.content.decode("utf-8", "replace"))
        assert str(ack.segment("MSA")(1)) in ("AE", "AR"), "an HL7 refusal that is not AE or AR"
        errors = [segment for segment in ack if str(segment[0]) == "ERR"]
        assert errors and all(str(e(8)).strip() for e in errors), "an HL7 refusal without ERR-8"
        return True
    body = json.loads(response.content) if response.content else None
    reasons = _reasons(body)
    assert reasons, f"{response.status_code} without a reason: {response.content[:200]!r}"
    assert all(reason.strip() for reason in reasons), f"an empty reason: {body}"
    return True


def fuzz_api(app: FastAPI, headers: dict[str, str] | None = None) -> Counter[int]:
    """Every operation of the app's OpenAPI, with valid and invalid requests, under every check;
    the failures of all operations are reported together. Returns how often each status came."""
    statuses: Counter[int] = Counter()
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.response_schema_conformance,
        rejection_has_reason,
    ]
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the lifespan
        failures = []
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @PER_OPERATION
                @given(case=operation.as_strategy(generation_mode=mode))
                def call(case: schemathesis.Case) -> None:
                    response = case.call(headers=headers)
                    statuses[response.status_code] += 1
                    case.validate_response(response, checks=checks, headers=headers)

                try:
                    call()
                except Unsatisfiable:
                    continue  # nothing to make invalid (an operation without parameters)
                except (Exception, BaseExceptionGroup) as error:  # reported with the others
                    failures.append(f"{operation.label} ({mode.value}): {error}"[:3000])
        assert not failures, "\n\n".join(failures)
    finally:
        shutdown_lifespans()
    return statuses


def ingest_settings(settings: Settings) -> Settings:
    update: dict[str, Any] = {"mllp_port": 0}  # any free port: tests may run side by side
    if not settings.ingest_senders_file:
        update["ingest_senders_file"] = SENDERS_FILE
    return settings.model_copy(update=update)


def test_ingest(settings: Settings) -> None:
    statuses = fuzz_api(create_ingest(ingest_settings(settings)), INGEST_AUTH)
    assert statuses[202], f"no submission accepted: is the sender's token refused? {statuses}"


async def test_ingest_documents_the_422_it_answers(settings: Settings) -> None:
    """What ingest answers to an invalid lab result validates against what its OpenAPI says it
    answers (no Kafka needed: the body is refused before anything is published)."""
    app = create_ingest(ingest_settings(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post("/v1/labs", json={"value": "pending"}, headers=INGEST_AUTH)
    assert response.status_code == 422
    documented = app.openapi()["paths"]["/v1/labs"]["post"]["responses"]["422"]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), schema | {"components": app.openapi()["components"]})


def test_alerts(settings: Settings) -> None:
    statuses = fuzz_api(create_alerts(settings), PHYSICIAN)
    assert statuses[200], f"nothing answered 200: is the physician's token refused? {statuses}"


def test_dsmb(settings: Settings) -> None:
    assert fuzz_api(create_dsmb(settings))[200]


def test_grader(settings: Settings) -> None:
    assert fuzz_api(create_grader(settings))[404]  # no subject has events in a new namespace


# ---------------------------------------------------------------------------------------------
# What the fuzzing found, through the API (tests/fuzz/test_regressions.py has the parsers' side)
# ---------------------------------------------------------------------------------------------

LAB = {
    "subject_id": "GZ01-001",
    "site_id": "GZ01",
    "test": "NEUT",
    "value": 0.9,
    "unit": "10^9/L",
    "collected_at": "2025-04-14T07:30:00+08:00",
}
LB_ROW = {
    "STUDYID": "NCT05173246",
    "DOMAIN": "LB",
    "USUBJID": "NCT05173246-GZ01-001",
    "LBSEQ": "1",
    "LBTESTCD": "NEUT",
    "LBSTRESN": "0.9",
    "LBSTRESU": "10^9/L",
    "LBDTC": "2025-04-14T07:30:00+08:00",
}
ORU_C0D1 = (
    "MSH|^~\\&|LIS|GZ01-LIS|SAFETYMON|NCT05173246|20250414091500+0800||ORU^R01^ORU_R01|M1|P|2.5.1\r"
    "PID|1||GZ0700037^^^GZ01^MR\rPV1|1|O|||||||||||||||||C0D1\r"
    "OBR|1|PL-1|FI-1|CBC|||202504140700+0800\r"
    "OBX|1|NM|NEUT#^Neutrophils^L||0.9|10*9/L|1.8-6.3|L|||F|||202504140730+0800"
)


def _dose_of_infinity() -> bytes:
    body = {
        "subject_id": "GZ01-001",
        "site_id": "GZ01",
        "drug": "cisplatin",
        "visit": {"cycle": 1, "day": 1},
        "dose": 0,
        "dose_unit": "mg/m2",
        "administered_at": "2025-03-03T09:00:00+08:00",
    }
    return json.dumps(body).replace('"dose": 0', '"dose": 1e999').encode()  # JSON's inf


CRASHED_INGEST: list[tuple[str, str, bytes]] = [
    ("/v1/labs", "application/json", json.dumps(LAB | {"value": 10**400}).encode()),
    (
        "/v1/labs",
        "application/json",
        json.dumps(LAB | {"value": 1e300, "unit": "10*999999/L"}).encode(),
    ),
    ("/v1/doses", "application/json", _dose_of_infinity()),  # was accepted, published as null
    (
        "/v1/sdtm/rows",
        "application/json",
        json.dumps({"domain": "LB", "rows": [LB_ROW | {"LBSEQ": 10**400}]}).encode(),
    ),
    ("/v1/hl7", HL7_MEDIA_TYPE, ORU_C0D1.encode()),
    (
        "/v1/fhir",
        "application/fhir+json",
        json.dumps(
            fhir_builders.adverse_event(
                extension=[
                    {
                        "url": fhir.CTCAE_GRADE_EXTENSION_URL,
                        "valueCodeableConcept": {"coding": [{"code": "\u00b2"}]},
                    }
                ]
            )
        ).encode(),
    ),
    (
        "/v1/fhir",
        "application/fhir+json",
        json.dumps(fhir_builders.observation(contained=[{"resourceType": "Nope"}])).encode(),
    ),
    (
        "/v1/fhir",
        "application/fhir+json",
        json.dumps(fhir_builders.observation(code=None)).encode(),  # a required element: null
    ),
]


async def test_ingest_refuses_what_once_crashed_it(settings: Settings) -> None:
    """Each of these answered 500 (or, for the dose, 202 and an unreadable event); now 422,
    with the reason (an HL7 message: its ACK AE, an ERR on PV1-19)."""
    async with running(create_ingest(ingest_settings(settings)), INGEST_AUTH) as client:
        for path, kind, body in CRASHED_INGEST:
            response = await client.post(path, content=body, headers={"content-type": kind})
            assert response.status_code == 422, (path, response.status_code, response.text[:300])
        rows = {"domain": "LB", "rows": [LB_ROW | {"VISIT": "CYCLE 0 DAY 1"}]}
        report = (await client.post("/v1/sdtm/rows", json=rows)).json()
        assert [(r["row"], r["column"]) for r in report["rejected"]] == [(1, "VISIT")]


async def test_ingest_refuses_a_utc_offset_that_is_no_offset(settings: Settings) -> None:
    """'+99:00' matches the route's pattern (^[+-]\\d{2}:\\d{2}$) but is no UTC offset: once
    a 500 (sdtm's refusal was not caught), now a 422 naming utc_offset."""
    async with running(create_ingest(ingest_settings(settings)), INGEST_AUTH) as client:
        rows = {"domain": "LB", "utc_offset": "+99:00", "rows": [LB_ROW]}
        response = await client.post("/v1/sdtm/rows", json=rows)
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "field": "utc_offset",
                "reason": "utc_offset '+99:00' is not a UTC offset such as +08:00",
            }
        ]
        csv_file = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD\nNCT05173246,LB,X,1,NEUT\n"
        response = await client.post(
            "/v1/sdtm/lb",
            params={"utc_offset": "+15:00"},
            content=csv_file,
            headers={"content-type": "text/csv"},
        )
        assert response.status_code == 422


async def test_alerts_refuse_what_postgresql_cannot_hold(settings: Settings) -> None:
    """A NUL character, an instant before year 1 in UTC, a naive time, an OFFSET past bigint:
    each was a 500 from the database driver; now a 422 naming the parameter."""
    refused = [
        ("/v1/alerts", {"subject_id": "GZ01-001\x00"}, ("query", "subject_id")),
        ("/v1/alerts", {"site_id": "\x00", "status": "all"}, ("query", "site_id")),
        ("/v1/alerts", {"rule_id": "\x00"}, ("query", "rule_id")),
        ("/v1/alerts", {"offset": str(2**63)}, ("query", "offset")),
        ("/v1/subjects/GZ01%00001/timeline", {}, ("path", "subject_id")),
        ("/v1/audit", {"since": "0001-01-01T00:00:00+01:00"}, ("query", "since")),
        ("/v1/audit", {"until": "9999-12-31T23:59:59-01:00"}, ("query", "until")),
        ("/v1/audit", {"since": "2025-01-01T00:00:00"}, ("query", "since")),
    ]
    async with running(create_alerts(settings), PHYSICIAN) as client:
        for path, params, where in refused:
            response = await client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text[:300])
            assert [tuple(issue["loc"]) for issue in response.json()["detail"]] == [where]
        comment = {"comment": "seen\x00"}
        response = await client.post(f"/v1/alerts/{uuid.uuid4()}/acknowledge", json=comment)
        assert response.status_code == 422 and "NUL" in response.text


async def test_dsmb_refuses_a_cutoff_beyond_utc(settings: Settings) -> None:
    async with running(create_dsmb(settings)) as client:
        response = await client.get("/v1/dsmb/rollups", params={"cutoff": "0001-01-01T00:00+01:00"})
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "cutoff"
