"""CTCAE v4.03 grading of laboratory values: the thresholds as data, and the pure grading function.

Source of every threshold: NCI Common Terminology Criteria for Adverse Events v4.03 (2010-06-14),
file CTCAE_4.03_2010-06-14.xls, as exported in ../shared/reference/ctcae_v4_03_terms.csv; each band
below carries the criterion text it encodes. Grades are computed in the SI unit: for these terms the
SI thresholds are exact conversions of the printed ones (x1000 for counts, x10 for Hb in g/L) or
unit-free multiples of ULN, so no boundary moves.

Reading of a range "<A - B": the first bound is exclusive, the second inclusive, so a value exactly
at a threshold belongs to the milder grade (ANC exactly 1.0 x10^9/L is grade 2, not 3).
Parts of a grade that need clinical facts ("transfusion indicated", "life-threatening") are never
inferred from the value; the result's reason says so.
"""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel

from shared.labs import LAB_DEFINITIONS, LabTest

CTCAE_VERSION = "4.03"


class Direction(StrEnum):
    LOW = "low"
    HIGH = "high"


class Reference(StrEnum):
    """What a band's threshold is measured against."""

    ABSOLUTE = "absolute"  # in the SI unit of the test
    LLN = "LLN"  # multiple of the lower limit of normal
    ULN = "ULN"  # multiple of the upper limit of normal
    BASELINE = "baseline"  # multiple of the subject's baseline value


@dataclass(frozen=True)
class Band:
    """`grade` applies when the value is strictly beyond `multiple` x `reference`, in the term's
    direction (below for a low term, above for a high one)."""

    grade: int
    multiple: Decimal
    reference: Reference
    criterion: str


@dataclass(frozen=True)
class TermCriteria:
    term: str
    meddra_code: str
    test: LabTest
    direction: Direction
    bands: tuple[Band, ...]
    # Grades the criteria define only by clinical facts the value cannot give.
    clinical_only: str = ""


def _b(grade: int, multiple: str, reference: Reference, criterion: str) -> Band:
    return Band(grade, Decimal(multiple), reference, criterion)


A, LLN, ULN, BASE = Reference.ABSOLUTE, Reference.LLN, Reference.ULN, Reference.BASELINE

LAB_TERMS: tuple[TermCriteria, ...] = (
    TermCriteria(
        "Neutrophil count decreased",
        "10029366",
        LabTest.ANC,
        Direction.LOW,
        (
            _b(1, "1", LLN, "<LLN - 1500/mm3; <LLN - 1.5 x 10e9 /L"),
            _b(2, "1.5", A, "<1500 - 1000/mm3; <1.5 - 1.0 x 10e9 /L"),
            _b(3, "1.0", A, "<1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L"),
            _b(4, "0.5", A, "<500/mm3; <0.5 x 10e9 /L"),
        ),
    ),
    TermCriteria(
        "Platelet count decreased",
        "10035528",
        LabTest.PLATELETS,
        Direction.LOW,
        (
            _b(1, "1", LLN, "<LLN - 75,000/mm3; <LLN - 75.0 x 10e9 /L"),
            _b(2, "75", A, "<75,000 - 50,000/mm3; <75.0 - 50.0 x 10e9 /L"),
            _b(3, "50", A, "<50,000 - 25,000/mm3; <50.0 - 25.0 x 10e9 /L"),
            _b(4, "25", A, "<25,000/mm3; <25.0 x 10e9 /L"),
        ),
    ),
    TermCriteria(
        "Anemia",
        "10002272",
        LabTest.HEMOGLOBIN,
        Direction.LOW,
        (
            _b(1, "1", LLN, "Hemoglobin (Hgb) <LLN - 10.0 g/dL; <LLN - 6.2 mmol/L; <LLN - 100 g/L"),
            _b(2, "100", A, "Hgb <10.0 - 8.0 g/dL; <6.2 - 4.9 mmol/L; <100 - 80g/L"),
            _b(3, "80", A, "Hgb <8.0 g/dL; <4.9 mmol/L; <80 g/L; transfusion indicated"),
        ),
        clinical_only="grade 4 (life-threatening consequences; urgent intervention indicated) "
        "is not defined by the value",
    ),
    TermCriteria(
        "Alanine aminotransferase increased",
        "10001551",
        LabTest.ALT,
        Direction.HIGH,
        (
            _b(1, "1", ULN, ">ULN - 3.0 x ULN"),
            _b(2, "3.0", ULN, ">3.0 - 5.0 x ULN"),
            _b(3, "5.0", ULN, ">5.0 - 20.0 x ULN"),
            _b(4, "20.0", ULN, ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Aspartate aminotransferase increased",
        "10003481",
        LabTest.AST,
        Direction.HIGH,
        (
            _b(1, "1", ULN, ">ULN - 3.0 x ULN"),
            _b(2, "3.0", ULN, ">3.0 - 5.0 x ULN"),
            _b(3, "5.0", ULN, ">5.0 - 20.0 x ULN"),
            _b(4, "20.0", ULN, ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Blood bilirubin increased",
        "10005364",
        LabTest.TOTAL_BILIRUBIN,
        Direction.HIGH,
        (
            _b(1, "1", ULN, ">ULN - 1.5 x ULN"),
            _b(2, "1.5", ULN, ">1.5 - 3.0 x ULN"),
            _b(3, "3.0", ULN, ">3.0 - 10.0 x ULN"),
            _b(4, "10.0", ULN, ">10.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Creatinine increased",
        "10011368",
        LabTest.CREATININE,
        Direction.HIGH,
        (
            _b(1, "1", ULN, ">ULN - 1.5 x ULN"),
            _b(1, "1", BASE, ">1 - 1.5 x baseline"),
            _b(2, "1.5", ULN, ">1.5 - 3.0 x ULN"),
            _b(2, "1.5", BASE, ">1.5 - 3.0 x baseline"),
            _b(3, "3.0", ULN, ">3.0 - 6.0 x ULN"),
            _b(3, "3.0", BASE, ">3.0 x baseline"),
            _b(4, "6.0", ULN, ">6.0 x ULN"),
        ),
    ),
)

TERMS_BY_TEST: dict[LabTest, tuple[TermCriteria, ...]] = {
    test: tuple(term for term in LAB_TERMS if term.test is test) for test in LabTest
}


class GradeResult(BaseModel, frozen=True):
    term: str
    meddra_code: str
    direction: Direction
    grade: int | None  # None: the value and the references given cannot decide the grade
    minimum_grade: int  # the grade the value proves even when `grade` is undecided
    criterion: str  # the criterion text that decided the grade ("" for grade 0 or undecided)
    reason: str
    ctcae_version: str = CTCAE_VERSION


@dataclass(frozen=True)
class References:
    """Reference values in the test's SI unit; any may be missing."""

    lln: float | None = None
    uln: float | None = None
    baseline: float | None = None

    def resolve(self, band: Band) -> Decimal | None:
        if band.reference is Reference.ABSOLUTE:
            return band.multiple
        reference = {LLN: self.lln, ULN: self.uln, BASE: self.baseline}[band.reference]
        return None if reference is None else band.multiple * Decimal(str(reference))


def _beyond(value: Decimal, threshold: Decimal, direction: Direction) -> bool:
    return value < threshold if direction is Direction.LOW else value > threshold


def grade_term(criteria: TermCriteria, value_si: float, refs: References) -> GradeResult:
    value = Decimal(str(value_si))
    unit = LAB_DEFINITIONS[criteria.test].si_unit
    grade, deciding, missing = 0, None, set()
    for band in criteria.bands:
        threshold = refs.resolve(band)
        if threshold is None:
            missing.add(band)
        elif _beyond(value, threshold, criteria.direction) and band.grade > grade:
            grade, deciding = band.grade, band
    notes = [criteria.clinical_only] if criteria.clinical_only else []
    # A missing reference matters only if its band could have given a worse grade.
    could_be_worse = [band for band in missing if band.grade > grade]
    if could_be_worse and all(band.reference is BASE for band in could_be_worse):
        notes.append("baseline not known: graded against ULN only")
    elif could_be_worse:
        missing_refs = " and ".join(sorted({band.reference.value for band in could_be_worse}))
        reason = (
            f"{value_si} {unit}: {missing_refs} not given; at least grade {grade}, "
            "a worse grade cannot be excluded"
            if grade
            else f"{value_si} {unit}: {missing_refs} not given; grade cannot be decided"
        )
        return GradeResult(
            term=criteria.term,
            meddra_code=criteria.meddra_code,
            direction=criteria.direction,
            grade=None,
            minimum_grade=grade,
            criterion=deciding.criterion if deciding else "",
            reason="; ".join([reason, *notes]),
        )
    if deciding is None:
        reason = f"{value_si} {unit} is within the normal limit for this term"
    else:
        reason = f"{value_si} {unit} meets grade {grade}: {deciding.criterion}"
    return GradeResult(
        term=criteria.term,
        meddra_code=criteria.meddra_code,
        direction=criteria.direction,
        grade=grade,
        minimum_grade=grade,
        criterion=deciding.criterion if deciding else "",
        reason="; ".join([reason, *notes]),
    )


def grade_lab(test: LabTest, value_si: float, refs: References) -> list[GradeResult]:
    """Grade one lab value (in the test's SI unit) against every CTCAE term the test feeds."""
    return [grade_term(criteria, value_si, refs) for criteria in TERMS_BY_TEST[test]]
