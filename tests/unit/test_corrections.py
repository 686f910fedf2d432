"""Corrections and retractions re-evaluate the subject: what no longer holds is retracted with
the reason, what still holds keeps its id, what now follows is published."""

import uuid
from datetime import UTC, datetime

import pytest

from services.ctcae_grader.ledger import RevisionRefused, SubjectLedger
from shared.events import (
    AlertRaised,
    DoseDecisionMade,
    Envelope,
    EventCorrected,
    EventCorrectedPayload,
    EventRetracted,
    EventRetractedPayload,
    LabGraded,
    LabResultReported,
    Source,
)
from shared.protocol import study_protocol
from tests.unit.factories import enrolment, lab

PROTOCOL = study_protocol("NCT05173246")
NOW = datetime(2025, 4, 15, tzinfo=UTC)


def envelope(target: Envelope, message_id: str) -> dict:
    return {
        "event_id": uuid.uuid5(uuid.NAMESPACE_URL, message_id),
        "study_id": target.study_id,
        "site_id": target.site_id,
        "subject_id": target.subject_id,
        "occurred_at": NOW,
        "recorded_at": NOW,
        "source": Source(system="edc", message_id=message_id),
    }


def corrected(
    target: LabResultReported, value: float, reason: str = "transcription error"
) -> EventCorrected:
    p = target.payload
    fixed = p.model_copy(
        update={
            "reported": p.reported.model_copy(update={"value": value}),
            "si": p.si.model_copy(update={"value": value}),
        }
    )
    return EventCorrected(
        **envelope(target, f"fix-{value}"),
        payload=EventCorrectedPayload(
            corrected_event_id=target.event_id, reason=reason, corrected_payload=fixed
        ),
    )


def retracted(target: Envelope, reason: str = "sample haemolysed") -> EventRetracted:
    return EventRetracted(
        **envelope(target, "withdraw"),
        payload=EventRetractedPayload(retracted_event_id=target.event_id, reason=reason),
    )


def ledger_with(*events: Envelope) -> tuple[SubjectLedger, list[Envelope]]:
    ledger, outputs = SubjectLedger(), []
    for event in events:
        result = ledger.record(PROTOCOL, event, None)
        outputs += [*result.assessments, *result.alerts]
    return ledger, outputs


def retractions_in(*lists: list[Envelope]) -> dict:
    return {
        r.payload.retracted_event_id: r
        for outputs in lists
        for r in outputs
        if isinstance(r, EventRetracted)
    }


def test_a_correction_that_lifts_a_hold_retracts_the_decision_and_the_alert() -> None:
    low = lab("ANC", 0.9, day=1)
    ledger, before = ledger_with(enrolment(platinum="carboplatin"), low)
    hold = next(o for o in before if isinstance(o, DoseDecisionMade))
    alert = next(o for o in before if isinstance(o, AlertRaised))

    result = ledger.record(PROTOCOL, corrected(low, 2.0), None)

    retractions = retractions_in(result.assessments, result.alerts)
    assert hold.event_id in retractions and alert.event_id in retractions
    assert alert.event_id in retractions_in(result.alerts)  # on the alerts topic, to close it
    reason = retractions[hold.event_id].payload.reason
    assert "DoseDecisionMade no longer holds after EventCorrected" in reason
    assert "transcription error" in reason
    (regraded,) = [o for o in result.assessments if isinstance(o, LabGraded)]
    assert regraded.payload.grade == 0
    assert dict(ledger.state.holds) == {}


def test_a_correction_that_keeps_the_hold_keeps_its_decision_and_alert() -> None:
    low = lab("ANC", 0.9, day=1)
    ledger, before = ledger_with(enrolment(platinum="carboplatin"), low)
    result = ledger.record(PROTOCOL, corrected(low, 1.2), None)
    by_id = {o.event_id: o for o in before}
    retracted_types = {
        by_id[target].event_type for target in retractions_in(result.assessments, result.alerts)
    }
    assert retracted_types == {"LabGraded"}  # only the old grade (3) gives way to the new (2)
    assert not [o for o in result.alerts if isinstance(o, AlertRaised)]
    (regraded,) = [o for o in result.assessments if isinstance(o, LabGraded)]
    assert regraded.payload.grade == 2


def test_a_retracted_result_takes_its_grades_decisions_and_alerts_with_it() -> None:
    low = lab("ANC", 0.9, day=1)
    ledger, before = ledger_with(enrolment(platinum="carboplatin"), low)
    result = ledger.record(PROTOCOL, retracted(low), None)
    caused = {o.event_id for o in before if o.causation_id == low.event_id}
    assert caused and caused <= set(retractions_in(result.assessments, result.alerts))
    assert low.event_id not in {e.event_id for e in ledger.events}


def test_a_revision_of_an_unknown_event_is_refused_with_the_reason() -> None:
    ledger, _ = ledger_with(enrolment())
    with pytest.raises(RevisionRefused, match="no such event for this subject"):
        ledger.record(PROTOCOL, retracted(lab("ANC", 0.9)), None)


def test_the_same_revision_replayed_from_scratch_gives_the_same_outputs() -> None:
    low = lab("ANC", 0.9, day=1)
    events = [enrolment(platinum="carboplatin"), low, corrected(low, 2.0)]
    _, first = ledger_with(*events)
    _, again = ledger_with(*events)
    assert [o.event_id for o in first] == [o.event_id for o in again]


def test_a_result_delivered_twice_is_applied_once() -> None:
    low = lab("ANC", 0.9, day=1)
    ledger, _ = ledger_with(enrolment(platinum="carboplatin"), low)
    again = ledger.record(PROTOCOL, low.model_copy(), None)
    assert again.assessments == [] and again.alerts == []
    assert [e.event_id for e in ledger.events].count(low.event_id) == 1


def test_a_revision_delivered_twice_retracts_once() -> None:
    low = lab("ANC", 0.9, day=1)
    ledger, _ = ledger_with(enrolment(platinum="carboplatin"), low)
    withdrawal = retracted(low)
    first = ledger.record(PROTOCOL, withdrawal, None)
    again = ledger.record(PROTOCOL, withdrawal.model_copy(), None)
    assert retractions_in(first.assessments, first.alerts)
    assert again.assessments == [] and again.alerts == []


def test_a_refused_revision_stays_refused_when_delivered_again() -> None:
    ledger, _ = ledger_with(enrolment())
    stray = retracted(lab("ANC", 0.9))
    for _ in range(2):
        with pytest.raises(RevisionRefused):
            ledger.record(PROTOCOL, stray, None)
