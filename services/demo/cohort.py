"""A deterministic synthetic cohort for NCT05173246, as the sites would send it through ingest.

43 subjects at three sites (lead site Guangzhou), Q3W cycles: toripalimab 240 mg, nab-paclitaxel
220 mg/m2 and cisplatin 75 mg/m2 or carboplatin AUC 5 on day 1, nab-paclitaxel again on day 8.
Day-1 (pre-dose) and day-8 labs in SI units with the sites' reference ranges. Written-in cases:
day-1 neutropenia and thrombocytopenia (chemotherapy held, cycle delayed a week), an immune
hepatitis, an immune pneumonitis, and febrile neutropenia reported as an SAE. Subject ids only.
"""

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabResultIn,
    SubmissionIn,
    to_event,
)
from shared.events import Envelope

CHINA = timezone(timedelta(hours=8))
SITES = ("GZ01", "SH02", "BJ03")  # Guangzhou (lead), Shanghai, Beijing
CYCLE_DAYS = 21
DELAY_DAYS = 7
SEED = 5173246
STUDY = "NCT05173246"
# The request model of each ingest endpoint the cohort posts to.
MODELS: dict[str, type[SubmissionIn]] = {
    "/v1/enrolments": EnrolmentIn,
    "/v1/labs": LabResultIn,
    "/v1/adverse-events": AdverseEventIn,
    "/v1/doses": DoseIn,
}


@dataclass(frozen=True)
class Submission:
    endpoint: str  # ingest path, e.g. "/v1/labs"
    at: datetime  # when the site would send it, for ordering
    body: dict[str, Any]


# Reference ranges as a Chinese hospital lab prints them (SI units); sex-specific where they differ.
RANGES = {
    "ANC": ("10^9/L", 1.8, 6.3),
    "PLT": ("10^9/L", 125.0, 350.0),
    "HGB": ("g/L", {"M": 130.0, "F": 115.0}, {"M": 175.0, "F": 150.0}),
    "ALT": ("U/L", {"M": 9.0, "F": 7.0}, {"M": 50.0, "F": 40.0}),
    "AST": ("U/L", {"M": 15.0, "F": 13.0}, {"M": 40.0, "F": 35.0}),
    "TBIL": ("umol/L", None, 21.0),
    "CREAT": ("umol/L", {"M": 57.0, "F": 41.0}, {"M": 111.0, "F": 81.0}),
    # day-1 chemistry: electrolytes (cisplatin wastes magnesium and potassium) and albumin
    "K": ("mmol/L", 3.5, 5.3),
    "SODIUM": ("mmol/L", 137.0, 147.0),
    "MG": ("mmol/L", 0.75, 1.02),
    "CA": ("mmol/L", 2.11, 2.52),
    "ALB": ("g/L", 40.0, 55.0),
}
DAY1_ONLY = ("K", "SODIUM", "MG", "CA", "ALB")
PRECISION = {
    "ANC": 2,
    "PLT": 0,
    "HGB": 0,
    "ALT": 0,
    "AST": 0,
    "TBIL": 1,
    "CREAT": 0,
    "K": 1,
    "SODIUM": 0,
    "MG": 2,
    "CA": 2,
    "ALB": 0,
}
TYPICAL = {  # on-treatment values: mostly normal, albumin and magnesium drifting low
    "K": (3.4, 4.9),
    "SODIUM": (134, 143),
    "MG": (0.62, 0.98),
    "CA": (2.05, 2.45),
    "ALB": (33, 44),
}


@dataclass
class Subject:
    subject_id: str
    site_id: str
    sex: str
    age: int
    weight_kg: float
    height_cm: float
    creatinine: float
    liver_metastases: bool
    platinum: str
    start: date
    # per (cycle, day): overrides of lab values, e.g. {(2, 1): {"ANC": 0.9}}
    lab_overrides: dict[tuple[int, int], dict[str, float]] = field(default_factory=dict)
    adverse_events: list[dict[str, Any]] = field(default_factory=list)


def _range(test: str, sex: str) -> tuple[str, float | None, float]:
    unit, low, high = RANGES[test]
    low = low[sex] if isinstance(low, dict) else low
    high = high[sex] if isinstance(high, dict) else high
    return unit, low, high


def _subjects(count: int, rng: random.Random) -> list[Subject]:
    subjects = []
    for n in range(1, count + 1):
        site = SITES[0] if n % 3 else SITES[n // 3 % 2 + 1]
        sex = "M" if rng.random() < 0.78 else "F"  # oesophageal cancer is mostly male
        subjects.append(
            Subject(
                subject_id=f"{site}-{n:03d}",
                site_id=site,
                sex=sex,
                age=rng.randint(45, 74),
                weight_kg=round(rng.uniform(48, 78), 1),
                height_cm=round(rng.uniform(155, 180) if sex == "M" else rng.uniform(148, 168), 0),
                creatinine=round(rng.uniform(60, 95) if sex == "M" else rng.uniform(45, 75), 0),
                liver_metastases=rng.random() < 0.3,
                platinum="cisplatin" if rng.random() < 0.6 else "carboplatin",
                start=date(2025, 3, 3) + timedelta(days=4 * (n - 1)),
            )
        )
    return subjects


def _write_in_cases(subjects: list[Subject]) -> None:
    """The clinically interesting stories the demo must surface."""
    by_index = {i + 1: s for i, s in enumerate(subjects)}

    def at(n: int) -> Subject | None:
        return by_index.get(n)

    for n in (5, 17, 31):  # day-1 neutropenia: hold chemotherapy, delay a week
        if s := at(n):
            s.lab_overrides[(2, 1)] = {"ANC": 0.9}
    if s := at(12):  # day-1 thrombocytopenia
        s.lab_overrides[(3, 1)] = {"PLT": 68.0}
    if s := at(26):  # day-8 thrombocytopenia grade 3
        s.lab_overrides[(2, 8)] = {"PLT": 42.0}
    if s := at(9):  # immune-related hepatitis in cycle 3
        s.lab_overrides[(3, 8)] = {"ALT": 285.0, "AST": 221.0, "TBIL": 24.6}
        s.adverse_events.append(
            {
                "term": "Alanine aminotransferase increased",
                "verbatim": "immune-mediated hepatitis",
                "grade": 3,
                "immune_related": True,
                "related_drugs": ["toripalimab"],
                "cycle": 3,
                "day": 9,
            }
        )
    if s := at(21):  # immune-related pneumonitis
        s.adverse_events.append(
            {
                "term": "Pneumonitis",
                "verbatim": "checkpoint inhibitor pneumonitis",
                "grade": 2,
                "immune_related": True,
                "related_drugs": ["toripalimab"],
                "cycle": 3,
                "day": 14,
            }
        )
    if s := at(33):  # febrile neutropenia, hospitalised: an SAE
        s.lab_overrides[(2, 8)] = {"ANC": 0.4}
        s.adverse_events.append(
            {
                "term": "Febrile neutropenia",
                "verbatim": "febrile neutropenia, admitted",
                "grade": 3,
                "serious": True,
                "related_drugs": ["nab-paclitaxel", "carboplatin"],
                "cycle": 2,
                "day": 10,
            }
        )
    if s := at(40):  # a grade 2 anaemia that needs no alert
        s.lab_overrides[(4, 1)] = {"HGB": 88.0}
    if s := at(14):  # cisplatin-related hypomagnesaemia, grade 3, and hypokalaemia
        s.lab_overrides[(4, 1)] = {"MG": 0.38, "K": 2.9}


# Day-1 values that hold chemotherapy (D1-ANC-HOLD, D1-PLT-HOLD) or worse; a hold rechecks the
# panel a week later, so every one adds events as well as an alert.
DAY1_TOXICITY = ({"ANC": 0.9}, {"ANC": 0.8}, {"ANC": 0.4}, {"PLT": 68.0}, {"PLT": 45.0})
# Day-8 nadirs below the label's minimums (nab-paclitaxel skipped) or grade 3-4.
DAY8_TOXICITY = ({"ANC": 0.4}, {"ANC": 0.7}, {"PLT": 42.0}, {"PLT": 60.0})


def write_in_toxicity(subject: Subject, cycles: int, share: float, rng: random.Random) -> None:
    """Toxicity for the load the fault tests and benchmarks put through the pipeline: a day-1
    hold in about `share` of the cycles after the first, a day-8 nadir in half as many, and a
    serious febrile neutropenia (an alert with a 24-hour reporting deadline) for about half
    `share` of the subjects with no adverse event of their own."""
    for cycle in range(1, cycles + 1):
        if cycle > 1 and (cycle, 1) not in subject.lab_overrides and rng.random() < share:
            subject.lab_overrides[(cycle, 1)] = dict(rng.choice(DAY1_TOXICITY))
        if (cycle, 8) not in subject.lab_overrides and rng.random() < share / 2:
            subject.lab_overrides[(cycle, 8)] = dict(rng.choice(DAY8_TOXICITY))
    if not subject.adverse_events and rng.random() < share / 2:
        subject.adverse_events.append(
            {
                "term": "Febrile neutropenia",
                "verbatim": "febrile neutropenia, admitted",
                "grade": 3,
                "serious": True,
                "related_drugs": ["nab-paclitaxel", subject.platinum],
                "cycle": rng.randint(1, cycles),
                "day": 10,
            }
        )


def _lab_value(test: str, subject: Subject, day: int, rng: random.Random) -> float:
    _, low, high = _range(test, subject.sex)
    if test == "ANC":
        value = rng.uniform(1.2, 2.4) if day == 8 else rng.uniform(2.0, 5.5)  # day-8 nadir
    elif test == "PLT":
        value = rng.uniform(110, 240) if day == 8 else rng.uniform(150, 320)
    elif test == "HGB":
        value = rng.uniform(low - 18, low + 15)  # anaemia of chemotherapy is common
    elif test == "CREAT":
        value = subject.creatinine * rng.uniform(0.9, 1.15)
    elif test == "TBIL":
        value = rng.uniform(5, 19)
    elif test in TYPICAL:
        value = rng.uniform(*TYPICAL[test])
    else:
        value = rng.uniform((low or 0) + 3, high * 0.95)
    return round(value, PRECISION[test]) if PRECISION[test] else float(round(value))


def _sample_time(day: date) -> datetime:
    return datetime.combine(day, time(7, 30), CHINA)


def _lab_panel(
    subject: Subject, cycle: int, day: int, on: date, attempt: int, rng: random.Random
) -> list[Submission]:
    collected = _sample_time(on)
    overrides = subject.lab_overrides.get((cycle, day), {}) if attempt == 0 else {}
    submissions = []
    for test in RANGES:
        if day != 1 and test in DAY1_ONLY:
            continue
        unit, low, high = _range(test, subject.sex)
        value = overrides.get(test, _lab_value(test, subject, day, rng))
        body = {
            "subject_id": subject.subject_id,
            "site_id": subject.site_id,
            "test": test,
            "value": value,
            "unit": unit,
            "reference_high": high,
            "collected_at": collected.isoformat(),
            "visit": {"cycle": cycle, "day": day},
            "source_system": f"lis-{subject.site_id.lower()}",
            "source_message_id": f"{subject.subject_id}-C{cycle}D{day}-{attempt}-{test}",
        }
        if low is not None:
            body["reference_low"] = low
        submissions.append(Submission("/v1/labs", collected + timedelta(hours=2), body))
    return submissions


def _doses(subject: Subject, cycle: int, day: int, on: date) -> list[Submission]:
    given = datetime.combine(on, time(10, 0), CHINA)
    regimen = [("nab-paclitaxel", 220.0, "mg/m2")]
    if day == 1:
        platinum = (
            ("cisplatin", 75.0, "mg/m2")
            if subject.platinum == "cisplatin"
            else ("carboplatin", 5.0, "AUC")
        )
        regimen = [("toripalimab", 240.0, "mg"), *regimen, platinum]
    return [
        Submission(
            "/v1/doses",
            given + timedelta(hours=6),
            {
                "subject_id": subject.subject_id,
                "site_id": subject.site_id,
                "drug": drug,
                "visit": {"cycle": cycle, "day": day},
                "dose": dose,
                "dose_unit": unit,
                "administered_at": (given + timedelta(minutes=45 * i)).isoformat(),
                "source_system": "edc",
                "source_message_id": f"{subject.subject_id}-C{cycle}D{day}-{drug}",
            },
        )
        for i, (drug, dose, unit) in enumerate(regimen)
    ]


def _enrolment(subject: Subject) -> Submission:
    enrolled = subject.start - timedelta(days=3)
    return Submission(
        "/v1/enrolments",
        datetime.combine(enrolled, time(16), CHINA),
        {
            "subject_id": subject.subject_id,
            "site_id": subject.site_id,
            "enrolled_on": enrolled.isoformat(),
            "sex": subject.sex,
            "age_years": subject.age,
            "weight_kg": subject.weight_kg,
            "height_cm": subject.height_cm,
            "baseline_creatinine": {"value": subject.creatinine, "unit": "umol/L"},
            "liver_metastases": subject.liver_metastases,
            "platinum": subject.platinum,
            "source_system": "edc",
            "source_message_id": f"{subject.subject_id}-enrolment",
        },
    )


def _adverse_event(
    subject: Subject, ae: dict[str, Any], cycle_start: dict[int, date]
) -> Submission:
    onset = cycle_start[ae["cycle"]] + timedelta(days=ae["day"] - 1)
    aware = datetime.combine(onset, time(18), CHINA)
    body = {
        "subject_id": subject.subject_id,
        "site_id": subject.site_id,
        "term": ae["term"],
        "verbatim": ae["verbatim"],
        "grade": ae["grade"],
        "serious": ae.get("serious", False),
        "immune_related": ae.get("immune_related", False),
        "related_drugs": ae["related_drugs"],
        "onset_date": onset.isoformat(),
        "site_aware_at": aware.isoformat(),
        "source_system": "edc",
        "source_message_id": f"{subject.subject_id}-AE-{ae['term']}",
    }
    return Submission("/v1/adverse-events", aware + timedelta(hours=1), body)


def _subject_history(subject: Subject, cycles: int, rng: random.Random) -> list[Submission]:
    history = [_enrolment(subject)]
    day1 = subject.start
    cycle_start: dict[int, date] = {}
    for cycle in range(1, cycles + 1):
        panel = _lab_panel(subject, cycle, 1, day1, 0, rng)
        history += panel
        if _held(panel):  # counts too low on day 1: chemotherapy held, recheck a week later
            day1 += timedelta(days=DELAY_DAYS)
            history += _lab_panel(subject, cycle, 1, day1, 1, rng)
        cycle_start[cycle] = day1
        history += _doses(subject, cycle, 1, day1)
        day8 = day1 + timedelta(days=7)
        panel8 = _lab_panel(subject, cycle, 8, day8, 0, rng)
        history += panel8
        if not _held(panel8, anc_min=1.0, plt_min=75.0):  # label day-8 minimums (dose_rules NP-2)
            history += _doses(subject, cycle, 8, day8)
        day1 += timedelta(days=CYCLE_DAYS)
    history += [_adverse_event(subject, ae, cycle_start) for ae in subject.adverse_events]
    return history


def _held(panel: list[Submission], anc_min: float = 1.5, plt_min: float = 100.0) -> bool:
    values = {s.body["test"]: s.body["value"] for s in panel}
    return values["ANC"] < anc_min or values["PLT"] < plt_min


def build_cohort(subjects: int = 43, cycles: int = 4, seed: int = SEED) -> list[Submission]:
    """Every submission of the trial so far, in the order the sites would send them."""
    rng = random.Random(seed)
    cohort = _subjects(subjects, rng)
    _write_in_cases(cohort)
    submissions = [s for subject in cohort for s in _subject_history(subject, cycles, rng)]
    return sorted(submissions, key=lambda s: s.at)


def cohort_events(submissions: list[Submission]) -> list[Envelope]:
    """The events ingest publishes for these submissions (its own validation and conversion),
    in submission order: for feeding the log directly, without HTTP."""
    return [to_event(MODELS[s.endpoint].model_validate(s.body), STUDY) for s in submissions]
