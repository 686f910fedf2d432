"""The grader's patient state is folded from the event log and survives a restart."""

import pytest
from prometheus_client import REGISTRY

from services.ctcae_grader.app import create_app
from shared.events import DoseDecisionMade, LabGraded
from shared.settings import Settings
from shared.topics import ASSESSMENTS, CLINICAL_EVENTS
from tests.support import events_of, produce_events, read_topic, running
from tests.unit.factories import enrolment, lab

pytestmark = pytest.mark.integration


async def test_a_restarted_grader_still_knows_the_subjects_enrolment(settings: Settings) -> None:
    boot, clinical = settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS)
    first_lab = lab("ANC", 2.5, day=8, source_message_id="before-restart")
    async with running(create_app(settings)):
        await produce_events(boot, clinical, [enrolment(), first_lab])
        await read_topic(boot, settings.topic(ASSESSMENTS), lambda r: len(r) >= 1)

    # A new process: nothing in memory; the enrolment must come back from the log.
    creatinine = lab(
        "CREAT",
        80,
        "umol/L",
        reference_low=None,
        reference_high=None,
        source_message_id="after-restart-creat",
    )
    low_anc = lab("ANC", 0.9, day=1, source_message_id="after-restart-anc")
    rebuilds_before = REGISTRY.get_sample_value("safetymon_grader_state_rebuild_seconds_count")
    async with running(create_app(settings)):
        await produce_events(boot, clinical, [creatinine, low_anc])
        records = await read_topic(boot, settings.topic(ASSESSMENTS), lambda r: len(r) >= 5)
    # The subject's partition was rebuilt from the log first, and that was timed.
    rebuilds = REGISTRY.get_sample_value("safetymon_grader_state_rebuild_seconds_count")
    assert rebuilds is not None and rebuilds == (rebuilds_before or 0) + 1

    events = events_of(records)
    (creatinine_grade,) = [
        e for e in events if isinstance(e, LabGraded) and e.payload.test.value == "CREAT"
    ]
    # Female, 52: configured ULN 73 umol/L -> 80 is grade 1 by ULN; baseline 50 -> 1.6 x = grade 2.
    assert creatinine_grade.payload.grade == 2
    assert "configured reference range (female, age 18-59" in creatinine_grade.payload.reason
    (decision,) = [
        e for e in events if isinstance(e, DoseDecisionMade) and e.payload.rule_id == "D1-ANC-HOLD"
    ]
    assert {a.drug.value for a in decision.payload.actions} == {"nab-paclitaxel", "cisplatin"}
