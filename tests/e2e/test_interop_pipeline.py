"""End to end, the same lab result in four formats: JSON over HTTP, HL7 v2 ORU^R01 over MLLP, a
FHIR R4 Observation and an SDTM LB row given to `safetymon import`. Each must become the same
LabResultReported event (same payload, clinical time and site; only the subject and the source
differ), the same grade and the same alert. Malformed input of each format is refused with a
precise error and publishes nothing.
"""

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import hl7
import httpx
import pytest

from services.ingest.interop.mllp import send_mllp
from shared.events import LabGraded, LabResultReported
from shared.topics import ASSESSMENTS, CLINICAL_EVENTS
from tests.e2e.conftest import Pipeline, live_pipeline
from tests.e2e.test_live_pipeline import alert_rows
from tests.interop_messages import COLLECTED, fhir_observation, hl7_oru
from tests.support import INGEST_AUTH, INGEST_TOKEN, events_of, eventually, read_topic

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]

# subject, patient id (hospital MRN), USUBJID
SUBJECTS = {
    "json": ("GZ01-401", "GZ9000401", "NCT05173246-GZ01-401"),
    "hl7": ("GZ01-402", "GZ9000402", "NCT05173246-GZ01-402"),
    "fhir": ("GZ01-403", "GZ9000403", "NCT05173246-GZ01-403"),
    "sdtm": ("GZ01-404", "GZ9000404", "NCT05173246-GZ01-404"),
    "refused": ("GZ01-405", "GZ9000405", "NCT05173246-GZ01-405"),
}


@pytest.fixture(scope="module")
async def pipeline(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    enrolment_map = tmp_path_factory.mktemp("interop") / "enrolment.csv"
    enrolment_map.write_text(
        "subject_id,site_id,patient_id,usubjid\n"
        + "".join(f"{s},GZ01,{p},{u}\n" for s, p, u in SUBJECTS.values())
    )
    async with live_pipeline(
        kafka_bootstrap, postgres_url, "e2e-interop", ENROLMENT_MAP_FILE=str(enrolment_map)
    ) as running:
        yield running


def json_lab(subject: str) -> dict:
    return {
        "subject_id": subject,
        "site_id": "GZ01",
        "test": "NEUT",
        "value": 0.9,
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": COLLECTED,
        "visit": {"cycle": 2, "day": 1},
        "source_system": "lis-gz01",
        "source_message_id": f"{subject}-C2D1-ANC",
    }


SDTM_LB_HEADER = (
    "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBTEST,LBORRES,LBORRESU,LBORNRLO,LBORNRHI,"
    "LBSTRESC,LBSTRESN,LBSTRESU,LBSTNRLO,LBSTNRHI,VISIT,LBDTC\n"
)


def sdtm_lb_row(usubjid: str, seq: int, value: str, unit: str) -> str:
    return (
        f"NCT05173246,LB,{usubjid},{seq},NEUT,Neutrophils,{value},{unit},1.8,6.3,"
        f"{value},{value},{unit},1.8,6.3,CYCLE 2 DAY 1,{COLLECTED}\n"
    )


def safetymon_import(pipeline: Pipeline, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "import", *map(str, files)],
        env=pipeline.env
        | {
            "INGEST_PORT": pipeline.urls["ingest"].rsplit(":", 1)[1],
            "SAFETYMON_TOKEN": INGEST_TOKEN,
        },
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_one_result_in_four_formats_gives_one_event_one_grade_one_alert(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    subject = {fmt: ids[0] for fmt, ids in SUBJECTS.items()}
    async with httpx.AsyncClient(base_url=pipeline.urls["ingest"], headers=INGEST_AUTH) as client:
        assert (await client.post("/v1/labs", json=json_lab(subject["json"]))).status_code == 202
        fhir = await client.post("/v1/fhir", json=fhir_observation(SUBJECTS["fhir"][1]))
        assert fhir.status_code == 202, fhir.text
    ack = await send_mllp("127.0.0.1", pipeline.services.mllp_port, hl7_oru(SUBJECTS["hl7"][1]), 10)
    assert str(hl7.parse(ack.decode()).segment("MSA")[1]) == "AA", ack
    lb = tmp_path / "lb.csv"
    lb.write_text(SDTM_LB_HEADER + sdtm_lb_row(SUBJECTS["sdtm"][2], 1, "0.9", "10^9/L"))
    imported = safetymon_import(pipeline, lb)
    assert imported.returncode == 0, imported.stderr
    assert "1 accepted, 0 rejected" in imported.stdout

    subjects = set(subject[f] for f in ("json", "hl7", "fhir", "sdtm"))
    labs = await lab_events(pipeline, subjects)
    payloads = {e.subject_id: e.payload for e in labs}
    assert payloads.keys() == subjects
    assert len({p.model_dump_json() for p in payloads.values()}) == 1, payloads
    assert {(e.occurred_at, e.site_id) for e in labs} == {(labs[0].occurred_at, "GZ01")}
    assert len({e.source.system for e in labs}) == 4

    grades = await graded(pipeline, subjects)
    assert {(g.payload.term, g.payload.grade) for g in grades} == {
        ("Neutrophil count decreased", 3)
    }
    assert {g.subject_id for g in grades} == subjects
    for fmt in ("json", "hl7", "fhir", "sdtm"):
        rows = await eventually(lambda s=subject[fmt]: alert_rows(pipeline.database_url, s), 15)
        assert [(r["rule_id"], r["severity"]) for r in rows] == [("D1-ANC-HOLD", "high")], fmt


async def lab_events(pipeline: Pipeline, subjects: set[str]) -> list[LabResultReported]:
    topic = pipeline.settings.topic(CLINICAL_EVENTS)

    def of_subjects(records: list) -> list[LabResultReported]:
        return [
            e
            for e in events_of(records)
            if isinstance(e, LabResultReported) and e.subject_id in subjects
        ]

    records = await read_topic(
        pipeline.settings.kafka_bootstrap_servers,
        topic,
        lambda r: len(of_subjects(r)) >= len(subjects),
    )
    return of_subjects(records)


async def graded(pipeline: Pipeline, subjects: set[str]) -> list[LabGraded]:
    def of_subjects(records: list) -> list[LabGraded]:
        return [
            e for e in events_of(records) if isinstance(e, LabGraded) and e.subject_id in subjects
        ]

    records = await read_topic(
        pipeline.settings.kafka_bootstrap_servers,
        pipeline.settings.topic(ASSESSMENTS),
        lambda r: len(of_subjects(r)) >= len(subjects),
    )
    return of_subjects(records)


async def test_malformed_input_of_each_format_is_refused_precisely_and_publishes_nothing(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    refused_subject, patient, usubjid = SUBJECTS["refused"]
    async with httpx.AsyncClient(base_url=pipeline.urls["ingest"], headers=INGEST_AUTH) as client:
        as_json = await client.post("/v1/labs", json=json_lab(refused_subject) | {"unit": "mg/dL"})
        as_fhir = await client.post("/v1/fhir", json=fhir_observation(patient, value=None))
        unknown = await client.post("/v1/hl7", content=hl7_oru("NOT-ENROLLED", control_id="X1"))
    assert as_json.status_code == 422
    assert as_json.json()["detail"][0]["field"] == "unit"

    assert as_fhir.status_code == 422
    issues = as_fhir.json()["issue"]
    assert as_fhir.json()["resourceType"] == "OperationOutcome"
    assert any("Observation.value" in " ".join(i.get("expression", [])) for i in issues), issues

    assert unknown.status_code == 422
    ack = hl7.parse(unknown.text)
    assert str(ack.segment("MSA")[1]) in ("AE", "AR")
    assert "not in the enrolment map" in unknown.text
    assert "TEST^PATIENT" not in unknown.text and "PATIENT" not in unknown.text

    bad_value = await send_mllp(
        "127.0.0.1", pipeline.services.mllp_port, hl7_oru(patient, value="abc", control_id="X2"), 10
    )
    assert str(hl7.parse(bad_value.decode()).segment("MSA")[1]) == "AE"
    assert "OBX" in bad_value.decode()

    lb = tmp_path / "lb.csv"
    lb.write_text(SDTM_LB_HEADER + sdtm_lb_row(usubjid, 7, "0.9", "furlongs"))
    imported = safetymon_import(pipeline, lb)
    assert imported.returncode == 3, imported.stdout + imported.stderr
    report = (tmp_path / "lb.csv.errors.csv").read_text().splitlines()
    assert report[0] == "row,column,reason"
    assert report[1].startswith("1,LBSTRESU,"), report

    # A sentinel result sent after the refused ones: once it is on the topic, anything the
    # refused ones had published would be too.
    async with httpx.AsyncClient(base_url=pipeline.urls["ingest"], headers=INGEST_AUTH) as client:
        sentinel = json_lab(SUBJECTS["json"][0]) | {"source_message_id": "sentinel"}
        assert (await client.post("/v1/labs", json=sentinel)).status_code == 202
    records = await read_topic(
        pipeline.settings.kafka_bootstrap_servers,
        pipeline.settings.topic(CLINICAL_EVENTS),
        lambda r: any(e.source.message_id == "sentinel" for e in events_of(r)),
    )
    assert any(e.source.message_id == "sentinel" for e in events_of(records))
    assert [e for e in events_of(records) if e.subject_id == refused_subject] == []


async def test_reimporting_a_dataset_publishes_the_same_event_ids(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    lb = tmp_path / "lb.csv"
    usubjid = SUBJECTS["sdtm"][2]
    lb.write_text(
        SDTM_LB_HEADER + "".join(sdtm_lb_row(usubjid, n, "2.5", "10^9/L") for n in (2, 3))
    )
    for _ in range(2):
        assert safetymon_import(pipeline, lb).returncode == 0
    rows = {f"LB|{usubjid}|2", f"LB|{usubjid}|3"}

    def from_import(records: list) -> list:
        return [e for e in events_of(records) if e.source.message_id in rows]

    records = await read_topic(
        pipeline.settings.kafka_bootstrap_servers,
        pipeline.settings.topic(CLINICAL_EVENTS),
        lambda r: len(from_import(r)) >= 4,
    )
    assert len(from_import(records)) == 4  # each row sent twice ...
    assert len({e.event_id for e in from_import(records)}) == 2  # ... as the same two events
