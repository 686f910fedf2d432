"""Every lab test safetymon knows is graded live, through the real broker, for every term."""

import pytest

from services.ctcae_grader.app import create_app
from shared.ctcae import LAB_TERMS
from shared.events import LabGraded
from shared.labs import LAB_DEFINITIONS, LabTest
from shared.settings import Settings
from shared.topics import ASSESSMENTS, CLINICAL_EVENTS
from tests.support import events_of, produce_events, read_topic, running
from tests.unit.factories import lab

pytestmark = pytest.mark.integration

# A clearly abnormal value for each test, in its conventional unit, with a reference range.
ABNORMAL = {
    LabTest.WBC: (1500, 3500, 9500),
    LabTest.ANC: (400, 1800, 6300),
    LabTest.LYMPHOCYTES: (300, 1100, 3200),
    LabTest.CD4: (150, 500, 1400),
    LabTest.PLATELETS: (40_000, 125_000, 350_000),
    LabTest.HEMOGLOBIN: (7.5, 13.0, 17.5),
    LabTest.INR: (2.0, 0.8, 1.2),
    LabTest.APTT: (60, 25, 35),
    LabTest.FIBRINOGEN: (90, 200, 400),
    LabTest.HAPTOGLOBIN: (10, 30, 200),
    LabTest.ALT: (250, 9, 50),
    LabTest.AST: (250, 15, 40),
    LabTest.ALKALINE_PHOSPHATASE: (400, 45, 125),
    LabTest.GGT: (400, 10, 60),
    LabTest.TOTAL_BILIRUBIN: (5.0, 0.2, 1.2),
    LabTest.CREATININE: (4.0, 0.6, 1.2),
    LabTest.CREATINE_KINASE: (2000, 40, 200),
    LabTest.AMYLASE: (400, 30, 110),
    LabTest.LIPASE: (300, 10, 60),
    LabTest.CHOLESTEROL: (420, 120, 200),
    LabTest.TRIGLYCERIDES: (600, 40, 150),
    LabTest.GLUCOSE: (300, 70, 100),
    LabTest.POTASSIUM: (6.5, 3.5, 5.3),
    LabTest.SODIUM: (118, 137, 147),
    LabTest.CALCIUM: (13.0, 8.5, 10.2),
    LabTest.IONIZED_CALCIUM: (0.85, 1.1, 1.3),
    LabTest.MAGNESIUM: (0.8, 1.7, 2.4),
    LabTest.PHOSPHATE: (1.5, 2.5, 4.5),
    LabTest.URATE: (11, 3.5, 7.0),
    LabTest.ALBUMIN: (2.5, 3.5, 5.5),
}


async def test_one_result_of_every_test_is_graded_for_every_term_it_feeds(
    settings: Settings,
) -> None:
    assert set(ABNORMAL) == set(LabTest)
    results = [
        lab(
            test.value,
            value,
            LAB_DEFINITIONS[test].conventional_unit,
            reference_low=low,
            reference_high=high,
            cycle=None,
            source_message_id=f"all-terms-{test.value}",
        )
        for test, (value, low, high) in ABNORMAL.items()
    ]
    async with running(create_app(settings)):
        await produce_events(
            settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS), results
        )
        records = await read_topic(
            settings.kafka_bootstrap_servers,
            settings.topic(ASSESSMENTS),
            lambda r: _graded_count(r) >= len(LAB_TERMS),
            timeout_s=30,
        )

    graded = [e for e in events_of(records) if isinstance(e, LabGraded)]
    assert sorted((g.payload.test.value, g.payload.term) for g in graded) == sorted(
        (t.test.value, t.term) for t in LAB_TERMS
    )
    worst = {g.payload.term: g.payload.grade for g in graded if g.payload.grade}
    assert worst["Neutrophil count decreased"] == 4
    assert worst["Hyponatremia"] == 4
    assert worst["Hyperkalemia"] == 3
    assert worst["Blood bilirubin increased"] == 3
    assert worst["Hypoalbuminemia"] == 2


def _graded_count(records: list) -> int:
    return sum(1 for r in records if dict(r.headers).get("event_type") == b"LabGraded")
