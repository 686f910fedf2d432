"""What each event adds to the DSMB read models. Pure: an event in, rows out, nothing read.

Because no row depends on another event, events can be projected in any order (the three topics
are consumed independently) and a rebuild gives the same rows as live processing.
"""

from typing import Any

from sqlalchemy import Table

from services.dsmb import readmodels as rm
from shared.ae_dictionary import AeDictionary
from shared.events import (
    AdverseEventPayload,
    AdverseEventReported,
    AlertAcknowledged,
    AlertRaised,
    DoseAdministered,
    DoseAdministeredPayload,
    DoseDecisionMade,
    Envelope,
    EventCorrected,
    EventRetracted,
    LabGraded,
    LabResultPayload,
    SubjectEnrolled,
    SubjectEnrolledPayload,
)

Row = dict[str, Any]
Rows = list[tuple[Table, Row]]


def rows_of(event: Envelope, dictionary: AeDictionary) -> Rows:
    """The read-model rows `event` states; none for events no rollup uses (lab results are
    taken from their grades, which carry the value and its ULN multiple)."""
    match event:
        case SubjectEnrolled() | AdverseEventReported() | DoseAdministered():
            return [_clinical_row(event, event.event_id, event.payload, dictionary)]
        case EventCorrected():
            fact_id, corrected = event.payload.corrected_event_id, event.payload.corrected_payload
            if isinstance(corrected, LabResultPayload):
                return []  # a lab correction reaches the read models as its new grades
            return [_clinical_row(event, fact_id, corrected, dictionary)]
        case EventRetracted():
            return [(rm.retractions, _retraction_row(event))]
        case LabGraded():
            return [(rm.lab_grades, _lab_grade_row(event))]
        case DoseDecisionMade():
            return [(rm.dose_decisions, row) for row in _decision_rows(event)]
        case AlertRaised():
            p = event.payload
            row = {"alert_id": p.alert_id, "rule_id": p.rule_id, "severity": p.severity.value}
            return [(rm.alerts, _version(event, event.event_id) | row)]
        case AlertAcknowledged():
            p = event.payload
            row = {"alert_id": p.alert_id, "acknowledged_by": p.acknowledged_by}
            return [(rm.acknowledgements, _version(event, event.event_id) | row)]
    return []


def _version(event: Envelope, fact_id: Any, part: str = "") -> Row:
    return {
        "version_id": event.event_id,
        "part": part,
        "fact_id": fact_id,
        "recorded_at": event.recorded_at,
        "study_id": event.study_id,
        "site_id": event.site_id,
        "subject_id": event.subject_id,
    }


def _clinical_row(
    event: Envelope,
    fact_id: Any,
    payload: SubjectEnrolledPayload | AdverseEventPayload | DoseAdministeredPayload,
    dictionary: AeDictionary,
) -> tuple[Table, Row]:
    version = _version(event, fact_id)
    if isinstance(payload, SubjectEnrolledPayload):
        return rm.subjects, version | {
            "enrolled_on": payload.enrolled_on,
            "sex": payload.sex.value,
            "age_years": payload.age_years,
            "platinum": payload.platinum.value,
            "liver_metastases": payload.liver_metastases,
        }
    if isinstance(payload, DoseAdministeredPayload):
        return rm.doses, version | {
            "drug": str(payload.drug),
            "cycle": payload.visit.cycle,
            "day": payload.visit.day,
            "dose": payload.dose,
            "dose_unit": payload.dose_unit,
            "administered_at": payload.administered_at,
        }
    term = dictionary.lookup(payload.term)
    return rm.adverse_events, version | {
        # Ingest admits dictionary terms only; the spelling and SOC are NCI's.
        "term": term.term if term else payload.term,
        "soc": term.soc if term else "Unknown",
        "grade": payload.grade,
        "serious": payload.serious,
        "immune_related": payload.immune_related,
        "related_drugs": ",".join(str(drug) for drug in payload.related_drugs),
        "onset_date": payload.onset_date,
        "resolved_date": payload.resolved_date,
    }


def _retraction_row(event: EventRetracted) -> Row:
    return {
        "version_id": event.event_id,
        "retracted_event_id": event.payload.retracted_event_id,
        "recorded_at": event.recorded_at,
        "subject_id": event.subject_id,
        "reason": event.payload.reason,
    }


def _lab_grade_row(event: LabGraded) -> Row:
    p = event.payload
    return _version(event, event.event_id) | {
        "lab_event_id": p.lab_event_id,
        "test": p.test.value,
        "term": p.term,
        "grade": p.grade,
        "collected_at": event.occurred_at,
        "value_si": p.value_si,
        "unit_si": p.unit_si,
        "value_per_uln": p.value_per_uln,
    }


def _decision_rows(event: DoseDecisionMade) -> list[Row]:
    p = event.payload
    return [
        _version(event, event.event_id, part=str(action.drug))
        | {
            "rule_id": p.rule_id,
            "cause_id": event.causation_id,
            "action": action.action.value,
            "from_level": action.from_level,
            "to_level": action.to_level,
            "decided_for": event.occurred_at,
            "reason": p.reason,
        }
        for action in p.actions
    ]
