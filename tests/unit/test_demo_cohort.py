"""The demo's synthetic cohort: deterministic, realistic, and carrying the written-in cases."""

from collections import Counter

from services.demo.cohort import build_cohort
from services.ingest.domain import AdverseEventIn, DoseIn, EnrolmentIn, LabResultIn

MODELS = {
    "/v1/labs": LabResultIn,
    "/v1/doses": DoseIn,
    "/v1/enrolments": EnrolmentIn,
    "/v1/adverse-events": AdverseEventIn,
}


def test_the_cohort_is_the_same_every_run() -> None:
    assert build_cohort() == build_cohort()


def test_every_submission_is_valid_for_ingest() -> None:
    for submission in build_cohort():
        MODELS[submission.endpoint](**submission.body)


def test_43_subjects_with_labs_on_day_1_and_day_8_in_si_units() -> None:
    cohort = build_cohort()
    enrolled = {s.body["subject_id"] for s in cohort if s.endpoint == "/v1/enrolments"}
    assert len(enrolled) == 43
    labs = [s.body for s in cohort if s.endpoint == "/v1/labs"]
    assert {lab["visit"]["day"] for lab in labs} == {1, 8}
    assert {lab["unit"] for lab in labs} == {"10^9/L", "g/L", "U/L", "umol/L", "mmol/L"}


def test_the_written_in_cases_are_there() -> None:
    cohort = build_cohort()
    labs = [s.body for s in cohort if s.endpoint == "/v1/labs"]
    day1_low_anc = [
        b for b in labs if b["test"] == "ANC" and b["visit"]["day"] == 1 and b["value"] < 1.5
    ]
    assert len(day1_low_anc) == 3
    assert any(b["test"] == "PLT" and b["visit"]["day"] == 1 and b["value"] < 100 for b in labs)
    aes = Counter(
        (s.body["term"], s.body.get("serious"))
        for s in cohort
        if s.endpoint == "/v1/adverse-events"
    )
    assert aes[("Febrile neutropenia", True)] == 1
    assert aes[("Pneumonitis", False)] == 1


def test_a_held_cycle_is_delayed_a_week_before_dosing() -> None:
    cohort = build_cohort()
    panels = sorted(
        s.body["collected_at"]
        for s in cohort
        if s.endpoint == "/v1/labs"
        and s.body["subject_id"] == "GZ01-005"
        and s.body["test"] == "ANC"
        and s.body["visit"] == {"cycle": 2, "day": 1}
    )
    assert len(panels) == 2  # the held day 1 and the recheck a week later
    doses = [
        s.body
        for s in cohort
        if s.endpoint == "/v1/doses"
        and s.body["subject_id"] == "GZ01-005"
        and s.body["visit"] == {"cycle": 2, "day": 1}
    ]
    assert doses and all(d["administered_at"][:10] == panels[1][:10] for d in doses)
