"""CTCAE v4.03 grading of laboratory values: every threshold as data, and the pure grading core.

Source of every threshold and criterion text: NCI Common Terminology Criteria for Adverse Events
v4.03 (2010-06-14, CTCAE_4.03_2010-06-14.xls), as exported in shared/data/ctcae_v4_03_terms.csv
(provenance: ../shared/reference/CTCAE_SOURCE.md). Each band below quotes the criterion it encodes.

How the criteria are read (../shared/reference/dose_rules.md section 1.1):
- "<A - B": the first bound is exclusive, the second inclusive, so a value exactly at a threshold
  belongs to the milder grade (ANC exactly 1.0 x10^9/L is grade 2). A band marked `inclusive`
  is printed without "<"/">" ("150 mg/dL - 300 mg/dL"), so its threshold is in that grade.
- A value is graded in the unit system it arrived in, against that system's printed thresholds
  (CTCAE rounds SI and conventional thresholds separately: 1.2 mg/dL Mg is printed as 0.5 mmol/L,
  not 0.494). Any other unit is converted to SI first.
- A value inside the normal range (>= LLN for a "decreased" term, <= ULN for an "increased" term)
  is grade 0; baseline criteria (creatinine, fibrinogen, haemoglobin increased) count only beyond
  the normal range.
- Grades, or parts of grades, that need clinical facts ("symptomatic", "transfusion indicated",
  "life-threatening", "hospitalization indicated") are never inferred: the value's grade is given
  and the reason says what else could change it.
- A missing reference (LLN, ULN, baseline, fasting status) never defaults: if it could change the
  grade, the grade is left undecided and `minimum_grade` says what the value proves.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache

from shared.labs import (
    LAB_DEFINITIONS,
    LabTest,
    UnitSystem,
    canonical_unit,
    display_unit,
    factor_to_si,
    unit_system,
)

CTCAE_VERSION = "4.03"
# Two numbers closer than this (relative) are the same number: float noise from a unit conversion
# must not move a value off its threshold. Lab results carry far fewer than 9 significant digits.
_TOLERANCE = 1e-9


class Direction(StrEnum):
    LOW = "low"  # "... decreased", "Hypo...": worse as the value falls
    HIGH = "high"  # "... increased", "Hyper...": worse as the value rises


class Anchor(StrEnum):
    """What a band's number is measured against."""

    ABSOLUTE = "absolute"  # a value in the unit system's unit
    LLN = "LLN"  # a multiple of the lower limit of normal
    ULN = "ULN"  # a multiple of the upper limit of normal
    BASELINE = "baseline"  # a multiple of the subject's baseline
    ABOVE_REFERENCE = "above reference"  # an amount above ULN (or above baseline when it is > ULN)


class Condition(StrEnum):
    FASTING = "fasting"  # the band applies to a fasting sample only


@dataclass(frozen=True, slots=True)
class Band:
    grade: int
    anchor: Anchor
    si: float  # threshold in the SI unit, or the multiple / amount for relative anchors
    conventional: float  # the same in the conventional unit
    criterion: str
    inclusive: bool = False  # the threshold itself belongs to this grade
    requires: Condition | None = None

    def number(self, system: UnitSystem) -> float:
        return self.si if system is UnitSystem.SI else self.conventional


@dataclass(frozen=True, slots=True)
class TermCriteria:
    term: str
    meddra_code: str
    test: LabTest
    direction: Direction
    bands: tuple[Band, ...]
    # Clinical criteria the value cannot decide, said in the reason from grade `note_from` up.
    clinical_note: str = ""
    note_from: int = 1
    note_to: int = 4  # ... and up to this grade (a grade-1 note is moot at grade 3)


@dataclass(frozen=True, slots=True)
class References:
    """LLN, ULN and baseline in the same unit as the value graded; any may be missing."""

    lln: float | None = None
    uln: float | None = None
    baseline: float | None = None
    fasting: bool | None = None
    source: str = ""  # where LLN/ULN came from, when not from the result itself

    def scaled(self, factor: float) -> "References":
        def f(x: float | None) -> float | None:
            return None if x is None else x * factor

        return References(f(self.lln), f(self.uln), f(self.baseline), self.fasting, self.source)


# ---------------------------------------------------------------------------------------------
# The criteria
# ---------------------------------------------------------------------------------------------

A, LLN, ULN, BASE, ABOVE = (
    Anchor.ABSOLUTE,
    Anchor.LLN,
    Anchor.ULN,
    Anchor.BASELINE,
    Anchor.ABOVE_REFERENCE,
)


def _abs(grade: int, si: float, conventional: float, criterion: str, **kw: object) -> Band:
    return Band(grade, A, si, conventional, criterion, **kw)  # type: ignore[arg-type]


def _rel(grade: int, anchor: Anchor, multiple: float, criterion: str, **kw: object) -> Band:
    return Band(grade, anchor, multiple, multiple, criterion, **kw)  # type: ignore[arg-type]


def _uln_multiples(g2: float, g3: float, g4: float | None, texts: tuple[str, ...]) -> tuple:
    bands = [_rel(1, ULN, 1, texts[0]), _rel(2, ULN, g2, texts[1]), _rel(3, ULN, g3, texts[2])]
    if g4 is not None:
        bands.append(_rel(4, ULN, g4, texts[3]))
    return tuple(bands)


def _low_counts(
    g2: float, g3: float, g4: float, per_mm3: tuple[int, int, int], texts: tuple[str, str, str, str]
) -> tuple[Band, ...]:
    """A count term "decreased": G1 below LLN, then absolute limits (x10^9/L and /mm3)."""
    return (
        _rel(1, LLN, 1, texts[0]),
        _abs(2, g2, per_mm3[0], texts[1]),
        _abs(3, g3, per_mm3[1], texts[2]),
        _abs(4, g4, per_mm3[2], texts[3]),
    )


T = LabTest
LAB_TERMS: tuple[TermCriteria, ...] = (
    # --- Blood and lymphatic system disorders / Investigations: blood counts -----------------
    TermCriteria(
        "Anemia",
        "10002272",
        T.HEMOGLOBIN,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "Hemoglobin (Hgb) <LLN - 10.0 g/dL; <LLN - 6.2 mmol/L; <LLN - 100 g/L"),
            _abs(2, 100, 10.0, "Hgb <10.0 - 8.0 g/dL; <6.2 - 4.9 mmol/L; <100 - 80g/L"),
            _abs(3, 80, 8.0, "Hgb <8.0 g/dL; <4.9 mmol/L; <80 g/L; transfusion indicated"),
        ),
        "grade 4 (life-threatening consequences; urgent intervention indicated) is not "
        "defined by the value",
        note_from=3,
    ),
    TermCriteria(
        "Hemoglobin increased",
        "10055599",
        T.HEMOGLOBIN,
        Direction.HIGH,
        (
            _rel(
                1,
                ABOVE,
                0,
                "Increase in >0 - 2 gm/dL above ULN or above baseline if baseline is above ULN",
            ),
            Band(
                2,
                ABOVE,
                20,
                2,
                "Increase in >2 - 4 gm/dL above ULN or above baseline if baseline is above ULN",
            ),
            Band(
                3,
                ABOVE,
                40,
                4,
                "Increase in >4 gm/dL above ULN or above baseline if baseline is above ULN",
            ),
        ),
    ),
    TermCriteria(
        "White blood cell decreased",
        "10049182",
        T.WBC,
        Direction.LOW,
        _low_counts(
            3.0,
            2.0,
            1.0,
            (3000, 2000, 1000),
            (
                "<LLN - 3000/mm3; <LLN - 3.0 x 10e9 /L",
                "<3000 - 2000/mm3; <3.0 - 2.0 x 10e9 /L",
                "<2000 - 1000/mm3; <2.0 - 1.0 x 10e9 /L",
                "<1000/mm3; <1.0 x 10e9 /L",
            ),
        ),
    ),
    TermCriteria(
        "Leukocytosis",
        "10024378",
        T.WBC,
        Direction.HIGH,
        (_abs(3, 100, 100_000, ">100,000/mm3"),),
        "grade 4 (clinical manifestations of leucostasis) is not defined by the value",
        note_from=3,
    ),
    TermCriteria(
        "Neutrophil count decreased",
        "10029366",
        T.ANC,
        Direction.LOW,
        _low_counts(
            1.5,
            1.0,
            0.5,
            (1500, 1000, 500),
            (
                "<LLN - 1500/mm3; <LLN - 1.5 x 10e9 /L",
                "<1500 - 1000/mm3; <1.5 - 1.0 x 10e9 /L",
                "<1000 - 500/mm3; <1.0 - 0.5 x 10e9 /L",
                "<500/mm3; <0.5 x 10e9 /L",
            ),
        ),
    ),
    TermCriteria(
        "Lymphocyte count decreased",
        "10025256",
        T.LYMPHOCYTES,
        Direction.LOW,
        _low_counts(
            0.8,
            0.5,
            0.2,
            (800, 500, 200),
            (
                "<LLN - 800/mm3; <LLN - 0.8 x 10e9/L",
                "<800 - 500/mm3; <0.8 - 0.5 x 10e9 /L",
                "<500 - 200/mm3; <0.5 - 0.2 x 10e9 /L",
                "<200/mm3; <0.2 x 10e9 /L",
            ),
        ),
    ),
    TermCriteria(
        "Lymphocyte count increased",
        "10025258",
        T.LYMPHOCYTES,
        Direction.HIGH,
        (
            _abs(2, 4.0, 4000, ">4000/mm3 - 20,000/mm3"),
            _abs(3, 20.0, 20_000, ">20,000/mm3"),
        ),
    ),
    TermCriteria(
        "CD4 lymphocytes decreased",
        "10007839",
        T.CD4,
        Direction.LOW,
        _low_counts(
            0.5,
            0.2,
            0.05,
            (500, 200, 50),
            (
                "<LLN - 500/mm3; <LLN - 0.5 x 10e9 /L",
                "<500 - 200/mm3; <0.5 - 0.2 x 10e9 /L",
                "<200 - 50/mm3; <0.2 x 0.05 - 10e9 /L",
                "<50/mm3; <0.05 x 10e9 /L",
            ),
        ),
    ),
    TermCriteria(
        "Platelet count decreased",
        "10035528",
        T.PLATELETS,
        Direction.LOW,
        _low_counts(
            75.0,
            50.0,
            25.0,
            (75_000, 50_000, 25_000),
            (
                "<LLN - 75,000/mm3; <LLN - 75.0 x 10e9 /L",
                "<75,000 - 50,000/mm3; <75.0 - 50.0 x 10e9 /L",
                "<50,000 - 25,000/mm3; <50.0 - 25.0 x 10e9 /L",
                "<25,000/mm3; <25.0 x 10e9 /L",
            ),
        ),
    ),
    # --- Coagulation --------------------------------------------------------------------------
    TermCriteria(
        "INR increased",
        "10022402",
        T.INR,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">1 - 1.5 x ULN"),
            _rel(2, ULN, 1.5, ">1.5 - 2.5 x ULN"),
            _rel(3, ULN, 2.5, ">2.5 x ULN"),
        ),
        "on anticoagulation CTCAE grades against baseline instead (>1 - 1.5, >1.5 - 2.5, >2.5 "
        "times above baseline): anticoagulation is not known from the value",
    ),
    TermCriteria(
        "Activated partial thromboplastin time prolonged",
        "10000636",
        T.APTT,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 1.5 x ULN"),
            _rel(2, ULN, 1.5, ">1.5 - 2.5 x ULN"),
            _rel(3, ULN, 2.5, ">2.5 x ULN; hemorrhage"),
        ),
    ),
    TermCriteria(
        "Fibrinogen decreased",
        "10016596",
        T.FIBRINOGEN,
        Direction.LOW,
        (
            _rel(1, LLN, 1.0, "<1.0 - 0.75 x LLN"),
            _rel(1, BASE, 1.0, "<25% decrease from baseline"),
            _rel(2, LLN, 0.75, "<0.75 - 0.5 x LLN"),
            _rel(2, BASE, 0.75, "25 - <50% decrease from baseline", inclusive=True),
            _rel(3, LLN, 0.5, "<0.5 - 0.25 x LLN"),
            _rel(3, BASE, 0.5, "50 - <75% decrease from baseline", inclusive=True),
            _rel(4, LLN, 0.25, "<0.25 x LLN"),
            _rel(4, BASE, 0.25, "75% decrease from baseline", inclusive=True),
            _abs(4, 0.5, 50, "absolute value <50 mg/dL"),
        ),
    ),
    TermCriteria(
        "Haptoglobin decreased",
        "10019150",
        T.HAPTOGLOBIN,
        Direction.LOW,
        (_rel(1, LLN, 1, "<LLN"),),
    ),
    # --- Liver, pancreas, muscle enzymes --------------------------------------------------------
    TermCriteria(
        "Alanine aminotransferase increased",
        "10001551",
        T.ALT,
        Direction.HIGH,
        _uln_multiples(
            3.0,
            5.0,
            20.0,
            (">ULN - 3.0 x ULN", ">3.0 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Aspartate aminotransferase increased",
        "10003481",
        T.AST,
        Direction.HIGH,
        _uln_multiples(
            3.0,
            5.0,
            20.0,
            (">ULN - 3.0 x ULN", ">3.0 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Alkaline phosphatase increased",
        "10001675",
        T.ALKALINE_PHOSPHATASE,
        Direction.HIGH,
        _uln_multiples(
            2.5,
            5.0,
            20.0,
            (">ULN - 2.5 x ULN", ">2.5 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "GGT increased",
        "10056910",
        T.GGT,
        Direction.HIGH,
        _uln_multiples(
            2.5,
            5.0,
            20.0,
            (">ULN - 2.5 x ULN", ">2.5 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Blood bilirubin increased",
        "10005364",
        T.TOTAL_BILIRUBIN,
        Direction.HIGH,
        _uln_multiples(
            1.5,
            3.0,
            10.0,
            (">ULN - 1.5 x ULN", ">1.5 - 3.0 x ULN", ">3.0 - 10.0 x ULN", ">10.0 x ULN"),
        ),
    ),
    TermCriteria(
        "CPK increased",
        "10011268",
        T.CREATINE_KINASE,
        Direction.HIGH,
        _uln_multiples(
            2.5,
            5.0,
            10.0,
            (">ULN - 2.5 x ULN", ">2.5 x ULN - 5 x ULN", ">5 x ULN - 10 x ULN", ">10 x ULN"),
        ),
    ),
    TermCriteria(
        "Serum amylase increased",
        "10040139",
        T.AMYLASE,
        Direction.HIGH,
        _uln_multiples(
            1.5,
            2.0,
            5.0,
            (">ULN - 1.5 x ULN", ">1.5 - 2.0 x ULN", ">2.0 - 5.0 x ULN", ">5.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Lipase increased",
        "10024574",
        T.LIPASE,
        Direction.HIGH,
        _uln_multiples(
            1.5,
            2.0,
            5.0,
            (">ULN - 1.5 x ULN", ">1.5 - 2.0 x ULN", ">2.0 - 5.0 x ULN", ">5.0 x ULN"),
        ),
    ),
    # --- Kidney -------------------------------------------------------------------------------
    TermCriteria(
        "Creatinine increased",
        "10011368",
        T.CREATININE,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 1.5 x ULN"),
            _rel(1, BASE, 1, ">1 - 1.5 x baseline"),
            _rel(2, ULN, 1.5, ">1.5 - 3.0 x ULN"),
            _rel(2, BASE, 1.5, ">1.5 - 3.0 x baseline"),
            _rel(3, ULN, 3.0, ">3.0 - 6.0 x ULN"),
            _rel(3, BASE, 3.0, ">3.0 baseline"),
            _rel(4, ULN, 6.0, ">6.0 x ULN"),
        ),
    ),
    TermCriteria(
        "Hyperuricemia",
        "10020907",
        T.URATE,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 10 mg/dL (0.59 mmol/L) without physiologic consequences"),
            _abs(4, 0.59, 10, ">10 mg/dL; >0.59 mmol/L; life-threatening consequences"),
        ),
        "grade 3 (>ULN - 10 mg/dL with physiologic consequences) needs clinical information",
        note_to=1,
    ),
    # --- Metabolism: lipids, glucose, proteins ---------------------------------------------------
    TermCriteria(
        "Cholesterol high",
        "10008661",
        T.CHOLESTEROL,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 300 mg/dL; >ULN - 7.75 mmol/L"),
            _abs(2, 7.75, 300, ">300 - 400 mg/dL; >7.75 - 10.34 mmol/L"),
            _abs(3, 10.34, 400, ">400 - 500 mg/dL; >10.34 - 12.92 mmol/L"),
            _abs(4, 12.92, 500, ">500 mg/dL; >12.92 mmol/L"),
        ),
    ),
    TermCriteria(
        "Hypertriglyceridemia",
        "10020870",
        T.TRIGLYCERIDES,
        Direction.HIGH,
        (
            _abs(1, 1.71, 150, "150 mg/dL - 300 mg/dL; 1.71 mmol/L - 3.42 mmol/L", inclusive=True),
            _abs(2, 3.42, 300, ">300 mg/dL - 500 mg/dL;  >3.42 mmol/L - 5.7 mmol/L"),
            _abs(3, 5.7, 500, ">500 mg/dL - 1000 mg/dL;  >5.7 mmol/L - 11.4 mmol/L"),
            _abs(4, 11.4, 1000, ">1000 mg/dL; >11.4 mmol/L;  life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hyperglycemia",
        "10020639",
        T.GLUCOSE,
        Direction.HIGH,
        (
            _rel(
                1,
                ULN,
                1,
                "Fasting glucose value >ULN - 160 mg/dL; Fasting glucose value >ULN - 8.9 mmol/L",
                requires=Condition.FASTING,
            ),
            _abs(
                2,
                8.9,
                160,
                "Fasting glucose value >160 - 250 mg/dL; Fasting glucose value >8.9 - 13.9 mmol/L",
                requires=Condition.FASTING,
            ),
            _abs(3, 13.9, 250, ">250 - 500 mg/dL; >13.9 - 27.8 mmol/L; hospitalization indicated"),
            _abs(4, 27.8, 500, ">500 mg/dL; >27.8 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypoglycemia",
        "10021005",
        T.GLUCOSE,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 55 mg/dL; <LLN - 3.0 mmol/L"),
            _abs(2, 3.0, 55, "<55 - 40 mg/dL; <3.0 - 2.2 mmol/L"),
            _abs(3, 2.2, 40, "<40 - 30 mg/dL; <2.2 - 1.7 mmol/L"),
            _abs(4, 1.7, 30, "<30 mg/dL; <1.7 mmol/L; life-threatening consequences; seizures"),
        ),
    ),
    TermCriteria(
        "Hypoalbuminemia",
        "10020943",
        T.ALBUMIN,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 3 g/dL; <LLN - 30 g/L"),
            _abs(2, 30, 3, "<3 - 2 g/dL; <30 - 20 g/L"),
            _abs(3, 20, 2, "<2 g/dL; <20 g/L"),
        ),
        "grade 4 (life-threatening consequences; urgent intervention indicated) is not "
        "defined by the value",
        note_from=3,
    ),
    # --- Electrolytes -------------------------------------------------------------------------
    TermCriteria(
        "Hyperkalemia",
        "10020647",
        T.POTASSIUM,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 5.5 mmol/L"),
            _abs(2, 5.5, 5.5, ">5.5 - 6.0 mmol/L"),
            _abs(3, 6.0, 6.0, ">6.0 - 7.0 mmol/L; hospitalization indicated"),
            _abs(4, 7.0, 7.0, ">7.0 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypokalemia",
        "10021018",
        T.POTASSIUM,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 3.0 mmol/L"),
            _abs(3, 3.0, 3.0, "<3.0 - 2.5 mmol/L; hospitalization indicated"),
            _abs(4, 2.5, 2.5, "<2.5 mmol/L; life-threatening consequences"),
        ),
        "grade 2 (<LLN - 3.0 mmol/L; symptomatic; intervention indicated) needs clinical "
        "information",
        note_to=1,
    ),
    TermCriteria(
        "Hypernatremia",
        "10020680",
        T.SODIUM,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 150 mmol/L"),
            _abs(2, 150, 150, ">150 - 155 mmol/L"),
            _abs(3, 155, 155, ">155 - 160 mmol/L; hospitalization indicated"),
            _abs(4, 160, 160, ">160 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hyponatremia",
        "10021038",
        T.SODIUM,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 130 mmol/L"),
            _abs(3, 130, 130, "<130 - 120 mmol/L"),
            _abs(4, 120, 120, "<120 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypercalcemia",
        "10020587",
        T.CALCIUM,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, "Corrected serum calcium of >ULN - 11.5 mg/dL; >ULN - 2.9 mmol/L"),
            _abs(2, 2.9, 11.5, "Corrected serum calcium of >11.5 - 12.5 mg/dL; >2.9 - 3.1 mmol/L"),
            _abs(3, 3.1, 12.5, "Corrected serum calcium of >12.5 - 13.5 mg/dL;>3.1 - 3.4 mmol/L"),
            _abs(4, 3.4, 13.5, "Corrected serum calcium of >13.5 mg/dL; >3.4 mmol/L"),
        ),
        "graded as corrected serum calcium: correct total calcium for albumin before grading",
    ),
    TermCriteria(
        "Hypocalcemia",
        "10020949",
        T.CALCIUM,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "Corrected serum calcium of <LLN - 8.0 mg/dL; <LLN - 2.0 mmol/L"),
            _abs(2, 2.0, 8.0, "Corrected serum calcium of <8.0 - 7.0 mg/dL; <2.0 - 1.75 mmol/L"),
            _abs(3, 1.75, 7.0, "Corrected serum calcium of <7.0 - 6.0 mg/dL; <1.75 - 1.5 mmol/L"),
            _abs(4, 1.5, 6.0, "Corrected serum calcium of  <6.0 mg/dL; <1.5 mmol/L"),
        ),
        "graded as corrected serum calcium: correct total calcium for albumin before grading",
    ),
    TermCriteria(
        "Hypercalcemia",
        "10020587",
        T.IONIZED_CALCIUM,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, "Ionized calcium  >ULN - 1.5 mmol/L"),
            _abs(2, 1.5, 1.5, "Ionized calcium >1.5 - 1.6 mmol/L; symptomatic"),
            _abs(3, 1.6, 1.6, "Ionized calcium  >1.6 - 1.8 mmol/L; hospitalization indicated"),
            _abs(4, 1.8, 1.8, "Ionized calcium  >1.8 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypocalcemia",
        "10020949",
        T.IONIZED_CALCIUM,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "Ionized calcium  <LLN - 1.0 mmol/L"),
            _abs(2, 1.0, 1.0, "Ionized calcium  <1.0 - 0.9 mmol/L; symptomatic"),
            _abs(3, 0.9, 0.9, "Ionized calcium  <0.9 - 0.8 mmol/L; hospitalization indicated"),
            _abs(4, 0.8, 0.8, "Ionized calcium  <0.8 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypermagnesemia",
        "10020670",
        T.MAGNESIUM,
        Direction.HIGH,
        (
            _rel(1, ULN, 1, ">ULN - 3.0 mg/dL; >ULN - 1.23 mmol/L"),
            _abs(3, 1.23, 3.0, ">3.0 - 8.0 mg/dL; >1.23 - 3.30 mmol/L"),
            _abs(4, 3.30, 8.0, ">8.0 mg/dL; >3.30 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypomagnesemia",
        "10021028",
        T.MAGNESIUM,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 1.2 mg/dL; <LLN - 0.5 mmol/L"),
            _abs(2, 0.5, 1.2, "<1.2 - 0.9 mg/dL; <0.5 - 0.4 mmol/L"),
            _abs(3, 0.4, 0.9, "<0.9 - 0.7 mg/dL; <0.4 - 0.3 mmol/L"),
            _abs(4, 0.3, 0.7, "<0.7 mg/dL; <0.3 mmol/L; life-threatening consequences"),
        ),
    ),
    TermCriteria(
        "Hypophosphatemia",
        "10021059",
        T.PHOSPHATE,
        Direction.LOW,
        (
            _rel(1, LLN, 1, "<LLN - 2.5 mg/dL; <LLN - 0.8 mmol/L"),
            _abs(2, 0.8, 2.5, "<2.5 - 2.0 mg/dL; <0.8 - 0.6 mmol/L"),
            _abs(3, 0.6, 2.0, "<2.0 - 1.0 mg/dL; <0.6 - 0.3 mmol/L"),
            _abs(4, 0.3, 1.0, "<1.0 mg/dL; <0.3 mmol/L; life-threatening consequences"),
        ),
    ),
)

TERMS_BY_TEST: dict[LabTest, tuple[TermCriteria, ...]] = {
    test: tuple(term for term in LAB_TERMS if term.test is test) for test in LabTest
}


# ---------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermGrade:
    """The grade of one value for one term. `grade` is None when the value and the references
    given cannot decide it; `minimum_grade` is what the value proves in any case."""

    criteria: TermCriteria
    value: float
    unit: str
    grade: int | None
    minimum_grade: int
    band: Band | None  # the band that decided the grade
    missing: tuple[str, ...] = ()  # references whose absence left the grade undecided
    notes: tuple[str, ...] = field(default=())
    within_normal: bool = False  # inside the normal range, hence grade 0

    @property
    def term(self) -> str:
        return self.criteria.term

    @property
    def criterion(self) -> str:
        return self.band.criterion if self.band else ""

    @property
    def reason(self) -> str:
        return _reason(self)


def _threshold(band: Band, system: UnitSystem, refs: References) -> float | None:
    number = band.number(system)
    anchor = band.anchor
    if anchor is Anchor.ABSOLUTE:
        return number
    if anchor is Anchor.ULN:
        return None if refs.uln is None else number * refs.uln
    if anchor is Anchor.LLN:
        return None if refs.lln is None else number * refs.lln
    if anchor is Anchor.BASELINE:
        return None if refs.baseline is None else number * refs.baseline
    if refs.uln is None:  # ABOVE_REFERENCE
        return None
    base = refs.baseline if refs.baseline is not None and refs.baseline > refs.uln else refs.uln
    return base + number


def _beyond(value: float, threshold: float, direction: Direction, inclusive: bool) -> bool:
    tolerance = abs(threshold) * _TOLERANCE
    if direction is Direction.LOW:
        return value <= threshold + tolerance if inclusive else value < threshold - tolerance
    return value >= threshold - tolerance if inclusive else value > threshold + tolerance


def _within_normal(value: float, direction: Direction, refs: References) -> bool:
    if direction is Direction.LOW:
        return refs.lln is not None and not _beyond(value, refs.lln, direction, False)
    return refs.uln is not None and not _beyond(value, refs.uln, direction, False)


def grade_term(
    criteria: TermCriteria, value: float, system: UnitSystem, refs: References
) -> TermGrade:
    """Grade `value` (in `system`'s unit for the test) against one term's criteria."""
    unit = LAB_DEFINITIONS[criteria.test].unit_of(system)
    if _within_normal(value, criteria.direction, refs):
        notes = (refs.source,) if refs.source else ()
        return TermGrade(criteria, value, unit, 0, 0, None, (), notes, within_normal=True)
    grade, deciding = 0, None
    undecided: list[tuple[Band, str]] = []  # bands that could not be applied, and what was missing
    for band in criteria.bands:
        if band.requires is Condition.FASTING and refs.fasting is False:
            continue  # the band is defined for fasting samples only
        missing = _missing_for(band, criteria.direction, refs)
        if missing:
            undecided.append((band, missing))
            continue
        threshold = _threshold(band, system, refs)
        if band.grade > grade and _beyond(value, threshold, criteria.direction, band.inclusive):
            grade, deciding = band.grade, band
    could_be_worse = [(band, missing) for band, missing in undecided if band.grade > grade]
    notes = _notes(criteria, grade, could_be_worse, refs)
    if could_be_worse and not all(missing == "baseline" for _, missing in could_be_worse):
        missing = tuple(sorted({name for _, name in could_be_worse if name != "baseline"}))
        return TermGrade(criteria, value, unit, None, grade, deciding, missing, notes)
    return TermGrade(criteria, value, unit, grade, grade, deciding, (), notes)


def _missing_for(band: Band, direction: Direction, refs: References) -> str:
    """The reference `band` needs and `refs` lacks ("" when it can be applied). Hot path."""
    anchor = band.anchor
    if anchor is Anchor.ABSOLUTE:
        needed = ""
    elif anchor is Anchor.ULN or anchor is Anchor.ABOVE_REFERENCE:
        needed = "ULN" if refs.uln is None else ""
    elif anchor is Anchor.LLN:
        needed = "LLN" if refs.lln is None else ""
    # Baseline criteria count only beyond the normal range, so they need its limit too.
    elif direction is Direction.LOW and refs.lln is None:
        needed = "LLN"
    elif direction is Direction.HIGH and refs.uln is None:
        needed = "ULN"
    else:
        needed = "baseline" if refs.baseline is None else ""
    if not needed and band.requires is not None and refs.fasting is None:
        return "fasting status"
    return needed


def _notes(
    criteria: TermCriteria,
    grade: int,
    could_be_worse: list[tuple[Band, str]],
    refs: References,
) -> tuple[str, ...]:
    notes = [refs.source] if refs.source else []
    if any(missing == "baseline" for _, missing in could_be_worse):
        notes.append("baseline not known: graded without the baseline criterion")
    if grade and refs.baseline is None and any(b.anchor is ABOVE for b in criteria.bands):
        notes.append(
            "baseline not known: counted from ULN (a baseline above ULN would count "
            "from the baseline)"
        )
    if criteria.clinical_note and criteria.note_from <= grade <= criteria.note_to:
        notes.append(criteria.clinical_note)
    return tuple(notes)


def _reason(result: TermGrade) -> str:
    shown = f"{result.value:g} {display_unit(result.unit)}".rstrip()
    if result.grade is None:
        missing = " and ".join(result.missing)
        if "LLN" in result.missing or "ULN" in result.missing:
            missing = f"no reference range: {missing}"
        head = (
            f"{shown}: {missing} not given; at least grade {result.minimum_grade}, a worse "
            "grade cannot be excluded"
            if result.minimum_grade
            else f"{shown}: {missing} not given; grade cannot be decided"
        )
    elif result.band is None and result.within_normal:
        head = f"{shown} is within the normal limit for this term"
    elif result.band is None:
        head = f"{shown} meets no grade of this term: grade 0"
    else:
        head = f"{shown} meets grade {result.grade}: {result.band.criterion}"
    return "; ".join((head, *result.notes))


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


@cache
def grading_system(test: LabTest, unit: str) -> tuple[UnitSystem, float]:
    """The printed column a value in `unit` is graded against, and the factor that brings it
    there (1 when the unit is that column's own)."""
    ucum = canonical_unit(test, unit)
    system = unit_system(test, ucum)
    if system is not None:
        return system, 1.0
    return UnitSystem.SI, float(factor_to_si(test, ucum))


def grade_lab(
    test: LabTest, value: float, unit: str, refs: References = References()
) -> list[TermGrade]:
    """Grade one result (value, references in `unit`) against every term its test feeds:
    a bidirectional test (potassium, WBC, ...) gives its low and its high term."""
    system, factor = grading_system(test, unit)
    if factor != 1.0:
        value, refs = value * factor, refs.scaled(factor)
    return [grade_term(criteria, value, system, refs) for criteria in TERMS_BY_TEST[test]]


def grade_bounded(
    grade_at: Callable[[float], TermGrade], bound: float, comparator: str
) -> TermGrade:
    """Grade a result reported only as beyond a bound ("<0.1", ">1000"): decided when every value
    on that side of the bound has the same grade, otherwise at least the milder of the two ends."""
    nudge = abs(bound) * 1e-6 or 1e-9
    near_value = bound - nudge if comparator == "<" else bound + nudge
    if comparator in ("<=", ">="):
        near_value = bound
    far_value = 0.0 if comparator.startswith("<") else bound * 1e6 + 1e6
    near, far = grade_at(near_value), grade_at(far_value)
    if near.grade is not None and near.grade == far.grade:
        note = f"reported as {comparator}{bound:g}: every value on that side has this grade"
        return replace(near, value=bound, notes=(*near.notes, note))
    floor = min(g.minimum_grade for g in (near, far))
    return TermGrade(
        near.criteria,
        bound,
        near.unit,
        None,
        floor,
        None,
        (f"exact value (reported as {comparator}{bound:g})",),
        near.notes,
    )


def grade_reported(
    test: LabTest, value: float, unit: str, comparator: str | None, refs: References
) -> list[TermGrade]:
    """Grade a result as reported, where `comparator` ("<", ">", ...) marks a bound, not a value."""
    if comparator is None:
        return grade_lab(test, value, unit, refs)
    system, factor = grading_system(test, unit)
    refs = refs.scaled(factor) if factor != 1.0 else refs
    return [
        grade_bounded(
            lambda v, c=criteria: grade_term(c, v, system, refs), value * factor, comparator
        )
        for criteria in TERMS_BY_TEST[test]
    ]
