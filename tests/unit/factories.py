"""Builders of canonical events for the unit tests."""

from datetime import UTC, datetime

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabResultIn,
    adverse_event,
    dose_event,
    enrolment_event,
    lab_event,
)
from shared.events import (
    AdverseEventReported,
    DoseAdministered,
    LabResultReported,
    SubjectEnrolled,
)

STUDY = "NCT05173246"


def lab_request(
    test: str = "ANC",
    value: float = 0.9,
    unit: str = "10^9/L",
    cycle: int | None = 2,
    day: int | None = 1,
    **overrides,
) -> LabResultIn:
    fields = {
        "subject_id": "GZ01-005",
        "site_id": "GZ01",
        "test": test,
        "value": value,
        "unit": unit,
        "reference_low": 1.8 if test == "ANC" else None,
        "reference_high": {"ANC": 6.3, "PLT": 350.0}.get(test, 40.0),
        "collected_at": datetime(2025, 4, 14, 7, 30, tzinfo=UTC),
        "visit": None if cycle is None else {"cycle": cycle, "day": day},
        "source_message_id": f"msg-{test}-{value}",
    }
    return LabResultIn(**(fields | overrides))


def lab(test: str = "ANC", value: float = 0.9, unit: str = "10^9/L", **kwargs) -> LabResultReported:
    return lab_event(lab_request(test, value, unit, **kwargs), STUDY)


def ae(**overrides) -> AdverseEventReported:
    fields = {
        "subject_id": "GZ01-033",
        "site_id": "GZ01",
        "term": "Febrile neutropenia",
        "grade": 3,
        "serious": True,
        "onset_date": "2025-05-10",
        "site_aware_at": datetime(2025, 5, 10, 10, 0, tzinfo=UTC),
        "source_message_id": "ae-1",
    }
    return adverse_event(AdverseEventIn(**(fields | overrides)), STUDY)


def enrolment_request(subject_id: str = "GZ01-005", **overrides) -> EnrolmentIn:
    """An enrolment as a site posts it; `overrides` replace its fields."""
    fields = {
        "subject_id": subject_id,
        "site_id": "GZ01",
        "enrolled_on": "2025-03-01",
        "sex": "F",
        "age_years": 52,
        "weight_kg": 55,
        "height_cm": 158,
        "baseline_creatinine": {"value": 50, "unit": "umol/L"},
        "liver_metastases": False,
        "platinum": "cisplatin",
        "source_message_id": f"{subject_id}-enrolment",
    }
    return EnrolmentIn(**(fields | overrides))


def enrolment(subject_id: str = "GZ01-005", **overrides) -> SubjectEnrolled:
    return enrolment_event(enrolment_request(subject_id, **overrides), STUDY)


def dose(
    drug: str, cycle: int, day: int, on: str, subject_id: str = "GZ01-005", **overrides
) -> DoseAdministered:
    units = {
        "toripalimab": ("mg", 240),
        "nab-paclitaxel": ("mg/m2", 220),
        "cisplatin": ("mg/m2", 75),
        "carboplatin": ("AUC", 5),
    }
    unit, amount = units[drug]
    fields = {
        "subject_id": subject_id,
        "site_id": "GZ01",
        "drug": drug,
        "visit": {"cycle": cycle, "day": day},
        "dose": amount,
        "dose_unit": unit,
        "administered_at": f"{on}T10:00:00+08:00",
        "source_message_id": f"{subject_id}-C{cycle}D{day}-{drug}",
    }
    return dose_event(DoseIn(**(fields | overrides)), STUDY)
