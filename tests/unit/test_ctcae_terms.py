"""Every CTCAE v4.03 lab term, at, just above and just below every printed threshold, in both
unit columns.

The expected grades are written by hand from the criterion text of the NCI export
(shared/data/ctcae_v4_03_terms.csv, quoted in each column's `printed`), read as
../shared/reference/dose_rules.md section 1.1 says: in "<A - B" the first bound is exclusive
and the second inclusive, so a value exactly at a threshold has the milder grade; a band printed
without "<"/">" ("150 mg/dL - 300 mg/dL", "25 - <50% decrease") includes its threshold. Relative
thresholds (x ULN, x LLN, x baseline) are multiplied out by hand for the references of the column.
Nothing here is read from LAB_TERMS except the list of (term, test) pairs that must be covered.
"""

import csv
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from shared.ctcae import LAB_TERMS, References, TermGrade, grade_lab, grade_reported
from shared.labs import LAB_DEFINITIONS, LabTest, resolve_test

CSV_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "ctcae_v4_03_terms.csv"
LOW, HIGH = "low", "high"  # the direction in which a term gets worse
RELATIVE = 1e-6  # "just" above or below a threshold


@dataclass(frozen=True)
class Cut:
    """Where the grade changes: `value` (in the column's unit, for the column's references)
    separates `milder` from `worse`; `inclusive` when `value` itself has the worse grade."""

    value: float
    milder: int
    worse: int
    inclusive: bool = False


@dataclass(frozen=True)
class Column:
    term: str
    test: LabTest
    direction: str
    unit: str
    refs: References
    step: float  # one lab-realistic step in this unit, smaller than any gap between cuts
    cuts: tuple[Cut, ...]
    printed: tuple[str, ...]  # the CSV criterion fragments the cuts come from

    @property
    def label(self) -> str:
        extra = []
        if self.refs.baseline is not None:
            extra.append(f"baseline {self.refs.baseline:g}")
        if self.refs.fasting is not None:
            extra.append("fasting" if self.refs.fasting else "not fasting")
        return f"{self.unit}" + (f" ({', '.join(extra)})" if extra else "")


def cut(value: float, milder: int, worse: int, inclusive: bool = False) -> Cut:
    return Cut(value, milder, worse, inclusive)


def col(
    term: str,
    test: LabTest,
    direction: str,
    unit: str,
    refs: References,
    step: float,
    cuts: tuple[Cut, ...],
    *printed: str,
) -> Column:
    return Column(term, test, direction, unit, refs, step, cuts, printed)


def grade_of(column: Column, value: float) -> TermGrade:
    results = grade_lab(column.test, value, column.unit, column.refs)
    (result,) = [r for r in results if r.term == column.term]
    return result


def boundary_cases(*columns: Column) -> list:
    """At the threshold; 1e-6 (relative) and one step either side of it."""
    cases = []
    for column in columns:
        worse_sign = -1 if column.direction == LOW else 1
        for c in column.cuts:
            at = c.worse if c.inclusive else c.milder
            name = f"{column.label} {c.value:g}"
            points = [
                (c.value, at, "at"),
                (c.value * (1 + worse_sign * RELATIVE), c.worse, "1e-6 worse"),
                (c.value * (1 - worse_sign * RELATIVE), c.milder, "1e-6 milder"),
                (c.value + worse_sign * column.step, c.worse, f"{column.step:g} worse"),
                (c.value - worse_sign * column.step, c.milder, f"{column.step:g} milder"),
            ]
            for value, grade, how in points:
                cases.append(pytest.param(column, value, grade, id=f"{name} {how} -> G{grade}"))
    return cases


def check(column: Column, value: float, grade: int) -> None:
    result = grade_of(column, value)
    assert result.grade == grade, result.reason
    assert result.minimum_grade == grade
    if grade:
        assert f"grade {grade}" in result.reason


# ---------------------------------------------------------------------------------------------
# The table, one entry per term: the SI column and the conventional column
# ---------------------------------------------------------------------------------------------

T = LabTest
HGB_SI = References(lln=130, uln=175)  # g/L, Chinese adult male interval
HGB_CONV = References(lln=13.0, uln=17.5)  # g/dL

ANEMIA = (
    col("Anemia", T.HEMOGLOBIN, LOW, "g/L", HGB_SI, 1,
        (cut(130, 0, 1), cut(100, 1, 2), cut(80, 2, 3)),
        "<LLN - 100 g/L", "<100 - 80g/L", "<80 g/L"),
    col("Anemia", T.HEMOGLOBIN, LOW, "g/dL", HGB_CONV, 0.1,
        (cut(13.0, 0, 1), cut(10.0, 1, 2), cut(8.0, 2, 3)),
        "<LLN - 10.0 g/dL", "<10.0 - 8.0 g/dL", "<8.0 g/dL"),
)  # fmt: skip

HEMOGLOBIN_INCREASED = (
    col("Hemoglobin increased", T.HEMOGLOBIN, HIGH, "g/L", HGB_SI, 1,
        (cut(175, 0, 1), cut(195, 1, 2), cut(215, 2, 3)),
        "Increase in >0 - 2 gm/dL above ULN", "Increase in >2 - 4 gm/dL above ULN",
        "Increase in >4 gm/dL above ULN"),
    col("Hemoglobin increased", T.HEMOGLOBIN, HIGH, "g/dL", HGB_CONV, 0.1,
        (cut(17.5, 0, 1), cut(19.5, 1, 2), cut(21.5, 2, 3)),
        "Increase in >0 - 2 gm/dL above ULN", "Increase in >2 - 4 gm/dL above ULN",
        "Increase in >4 gm/dL above ULN"),
    # "... or above baseline if baseline is above ULN": baseline 185 g/L > ULN 175 g/L
    col("Hemoglobin increased", T.HEMOGLOBIN, HIGH, "g/L", References(130, 175, 185), 1,
        (cut(185, 0, 1), cut(205, 1, 2), cut(225, 2, 3)),
        "above baseline if baseline is above ULN"),
    col("Hemoglobin increased", T.HEMOGLOBIN, HIGH, "g/dL", References(13.0, 17.5, 18.5), 0.1,
        (cut(18.5, 0, 1), cut(20.5, 1, 2), cut(22.5, 2, 3)),
        "above baseline if baseline is above ULN"),
)  # fmt: skip

WBC_DECREASED = (
    col("White blood cell decreased", T.WBC, LOW, "10*9/L", References(3.5, 9.5), 0.01,
        (cut(3.5, 0, 1), cut(3.0, 1, 2), cut(2.0, 2, 3), cut(1.0, 3, 4)),
        "<LLN - 3.0 x 10e9 /L", "<3.0 - 2.0 x 10e9 /L", "<2.0 - 1.0 x 10e9 /L",
        "<1.0 x 10e9 /L"),
    col("White blood cell decreased", T.WBC, LOW, "/mm3", References(3500, 9500), 10,
        (cut(3500, 0, 1), cut(3000, 1, 2), cut(2000, 2, 3), cut(1000, 3, 4)),
        "<LLN - 3000/mm3", "<3000 - 2000/mm3", "<2000 - 1000/mm3", "<1000/mm3"),
)  # fmt: skip

LEUKOCYTOSIS = (
    col("Leukocytosis", T.WBC, HIGH, "10*9/L", References(3.5, 9.5), 0.1,
        (cut(100, 0, 3),), ">100,000/mm3"),
    col("Leukocytosis", T.WBC, HIGH, "/mm3", References(3500, 9500), 100,
        (cut(100_000, 0, 3),), ">100,000/mm3"),
)  # fmt: skip

NEUTROPHILS = (
    col("Neutrophil count decreased", T.ANC, LOW, "10*9/L", References(1.8, 6.3), 0.01,
        (cut(1.8, 0, 1), cut(1.5, 1, 2), cut(1.0, 2, 3), cut(0.5, 3, 4)),
        "<LLN - 1.5 x 10e9 /L", "<1.5 - 1.0 x 10e9 /L", "<1.0 - 0.5 x 10e9 /L",
        "<0.5 x 10e9 /L"),
    col("Neutrophil count decreased", T.ANC, LOW, "/mm3", References(1800, 6300), 10,
        (cut(1800, 0, 1), cut(1500, 1, 2), cut(1000, 2, 3), cut(500, 3, 4)),
        "<LLN - 1500/mm3", "<1500 - 1000/mm3", "<1000 - 500/mm3", "<500/mm3"),
)  # fmt: skip

LYMPHOCYTES_DECREASED = (
    col("Lymphocyte count decreased", T.LYMPHOCYTES, LOW, "10*9/L", References(1.1, 3.2), 0.01,
        (cut(1.1, 0, 1), cut(0.8, 1, 2), cut(0.5, 2, 3), cut(0.2, 3, 4)),
        "<LLN - 0.8 x 10e9/L", "<0.8 - 0.5 x 10e9 /L", "<0.5 - 0.2 x 10e9 /L",
        "<0.2 x 10e9 /L"),
    col("Lymphocyte count decreased", T.LYMPHOCYTES, LOW, "/mm3", References(1100, 3200), 10,
        (cut(1100, 0, 1), cut(800, 1, 2), cut(500, 2, 3), cut(200, 3, 4)),
        "<LLN - 800/mm3", "<800 - 500/mm3", "<500 - 200/mm3", "<200/mm3"),
)  # fmt: skip

LYMPHOCYTES_INCREASED = (  # no grade 1 in v4.03; only /mm3 is printed (x10^9/L is exact)
    col("Lymphocyte count increased", T.LYMPHOCYTES, HIGH, "10*9/L", References(1.1, 3.2), 0.01,
        (cut(4.0, 0, 2), cut(20.0, 2, 3)), ">4000/mm3 - 20,000/mm3", ">20,000/mm3"),
    col("Lymphocyte count increased", T.LYMPHOCYTES, HIGH, "/mm3", References(1100, 3200), 10,
        (cut(4000, 0, 2), cut(20_000, 2, 3)), ">4000/mm3 - 20,000/mm3", ">20,000/mm3"),
)  # fmt: skip

CD4_DECREASED = (
    # G3 is printed garbled in SI ("<0.2 x 0.05 - 10e9 /L"); read as "<0.2 - 0.05 x 10e9 /L",
    # which is what the /mm3 column says ("<200 - 50/mm3").
    col("CD4 lymphocytes decreased", T.CD4, LOW, "10*9/L", References(0.6, 1.6), 0.01,
        (cut(0.6, 0, 1), cut(0.5, 1, 2), cut(0.2, 2, 3), cut(0.05, 3, 4)),
        "<LLN - 0.5 x 10e9 /L", "<0.5 - 0.2 x 10e9 /L", "<0.2 x 0.05 - 10e9 /L",
        "<0.05 x 10e9 /L"),
    col("CD4 lymphocytes decreased", T.CD4, LOW, "/mm3", References(600, 1600), 10,
        (cut(600, 0, 1), cut(500, 1, 2), cut(200, 2, 3), cut(50, 3, 4)),
        "<LLN - 500/mm3", "<500 - 200/mm3", "<200 - 50/mm3", "<50/mm3"),
)  # fmt: skip

PLATELETS = (
    col("Platelet count decreased", T.PLATELETS, LOW, "10*9/L", References(125, 350), 1,
        (cut(125, 0, 1), cut(75, 1, 2), cut(50, 2, 3), cut(25, 3, 4)),
        "<LLN - 75.0 x 10e9 /L", "<75.0 - 50.0 x 10e9 /L", "<50.0 - 25.0 x 10e9 /L",
        "<25.0 x 10e9 /L"),
    col("Platelet count decreased", T.PLATELETS, LOW, "/mm3", References(125_000, 350_000), 1000,
        (cut(125_000, 0, 1), cut(75_000, 1, 2), cut(50_000, 2, 3), cut(25_000, 3, 4)),
        "<LLN - 75,000/mm3", "<75,000 - 50,000/mm3", "<50,000 - 25,000/mm3", "<25,000/mm3"),
)  # fmt: skip

# INR, aPTT and the enzymes have one unit in both columns (1, s, U/L): the enzymes are also
# sent in ukat/L (60 U/L), graded after conversion; ULN 40 U/L, and 0.5 ukat/L (30 U/L).
INR = (
    col("INR increased", T.INR, HIGH, "1", References(0.8, 1.2), 0.1,
        (cut(1.2, 0, 1), cut(1.8, 1, 2), cut(3.0, 2, 3)),
        ">1 - 1.5 x ULN", ">1.5 - 2.5 x ULN", ">2.5 x ULN"),
)  # fmt: skip

APTT = (
    col("Activated partial thromboplastin time prolonged", T.APTT, HIGH, "s",
        References(25, 35), 0.1,
        (cut(35, 0, 1), cut(52.5, 1, 2), cut(87.5, 2, 3)),
        ">ULN - 1.5 x ULN", ">1.5 - 2.5 x ULN", ">2.5 x ULN"),
)  # fmt: skip

FIBRINOGEN = (
    # LLN 1.5 g/L, so the absolute "<50 mg/dL" (0.5 g/L) is above 0.25 x LLN and decides G4.
    col("Fibrinogen decreased", T.FIBRINOGEN, LOW, "g/L", References(1.5, 4.0), 0.01,
        (cut(1.5, 0, 1), cut(1.125, 1, 2), cut(0.75, 2, 3), cut(0.5, 3, 4)),
        "<1.0 - 0.75 x LLN", "<0.75 - 0.5 x LLN", "<0.5 - 0.25 x LLN",
        "absolute value <50 mg/dL"),
    col("Fibrinogen decreased", T.FIBRINOGEN, LOW, "mg/dL", References(150, 400), 1,
        (cut(150, 0, 1), cut(112.5, 1, 2), cut(75, 2, 3), cut(50, 3, 4)),
        "<1.0 - 0.75 x LLN", "<0.75 - 0.5 x LLN", "<0.5 - 0.25 x LLN",
        "absolute value <50 mg/dL"),
    # LLN 2.0 g/L, baseline 2.4 g/L: 25%, 50% and 75% decreases (1.8, 1.2, 0.6 g/L) are all
    # below the LLN, and each decrease band includes its own threshold.
    col("Fibrinogen decreased", T.FIBRINOGEN, LOW, "g/L", References(2.0, 4.0, 2.4), 0.01,
        (cut(2.0, 0, 1), cut(1.8, 1, 2, True), cut(1.2, 2, 3, True), cut(0.6, 3, 4, True)),
        "<25% decrease from baseline", "25 - <50% decrease from baseline",
        "50 - <75% decrease from baseline", "75% decrease from baseline"),
    col("Fibrinogen decreased", T.FIBRINOGEN, LOW, "mg/dL", References(200, 400, 240), 1,
        (cut(200, 0, 1), cut(180, 1, 2, True), cut(120, 2, 3, True), cut(60, 3, 4, True)),
        "<25% decrease from baseline", "25 - <50% decrease from baseline",
        "50 - <75% decrease from baseline", "75% decrease from baseline"),
)  # fmt: skip

HAPTOGLOBIN = (
    col("Haptoglobin decreased", T.HAPTOGLOBIN, LOW, "g/L", References(0.3, 2.0), 0.01,
        (cut(0.3, 0, 1),), "<LLN"),
    col("Haptoglobin decreased", T.HAPTOGLOBIN, LOW, "mg/dL", References(30, 200), 1,
        (cut(30, 0, 1),), "<LLN"),
)  # fmt: skip


def enzyme(term: str, test: LabTest, g2: float, g3: float, g4: float, *printed: str) -> tuple:
    """An "x ULN" enzyme term, in U/L (ULN 40) and ukat/L (ULN 0.5); thresholds by hand."""
    uln_u, uln_k = 40, 0.5
    return (
        col(term, test, HIGH, "U/L", References(uln=uln_u), 1,
            (cut(uln_u, 0, 1), cut(g2 * uln_u, 1, 2), cut(g3 * uln_u, 2, 3),
             cut(g4 * uln_u, 3, 4)), *printed),
        col(term, test, HIGH, "ukat/L", References(uln=uln_k), 0.01,
            (cut(uln_k, 0, 1), cut(g2 * uln_k, 1, 2), cut(g3 * uln_k, 2, 3),
             cut(g4 * uln_k, 3, 4)), *printed),
    )  # fmt: skip


ALT = enzyme(
    "Alanine aminotransferase increased", T.ALT, 3.0, 5.0, 20.0,
    ">ULN - 3.0 x ULN", ">3.0 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN",
)  # fmt: skip
AST = enzyme(
    "Aspartate aminotransferase increased", T.AST, 3.0, 5.0, 20.0,
    ">ULN - 3.0 x ULN", ">3.0 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN",
)  # fmt: skip
ALP = enzyme(
    "Alkaline phosphatase increased", T.ALKALINE_PHOSPHATASE, 2.5, 5.0, 20.0,
    ">ULN - 2.5 x ULN", ">2.5 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN",
)  # fmt: skip
GGT = enzyme(
    "GGT increased", T.GGT, 2.5, 5.0, 20.0,
    ">ULN - 2.5 x ULN", ">2.5 - 5.0 x ULN", ">5.0 - 20.0 x ULN", ">20.0 x ULN",
)  # fmt: skip
CPK = enzyme(
    "CPK increased", T.CREATINE_KINASE, 2.5, 5.0, 10.0,
    ">ULN - 2.5 x ULN", ">2.5 x ULN - 5 x ULN", ">5 x ULN - 10 x ULN", ">10 x ULN",
)  # fmt: skip
AMYLASE = enzyme(
    "Serum amylase increased", T.AMYLASE, 1.5, 2.0, 5.0,
    ">ULN - 1.5 x ULN", ">1.5 - 2.0 x ULN", ">2.0 - 5.0 x ULN", ">5.0 x ULN",
)  # fmt: skip
LIPASE = enzyme(
    "Lipase increased", T.LIPASE, 1.5, 2.0, 5.0,
    ">ULN - 1.5 x ULN", ">1.5 - 2.0 x ULN", ">2.0 - 5.0 x ULN", ">5.0 x ULN",
)  # fmt: skip

BILIRUBIN = (
    col("Blood bilirubin increased", T.TOTAL_BILIRUBIN, HIGH, "umol/L", References(uln=21), 0.1,
        (cut(21, 0, 1), cut(31.5, 1, 2), cut(63, 2, 3), cut(210, 3, 4)),
        ">ULN - 1.5 x ULN", ">1.5 - 3.0 x ULN", ">3.0 - 10.0 x ULN", ">10.0 x ULN"),
    col("Blood bilirubin increased", T.TOTAL_BILIRUBIN, HIGH, "mg/dL", References(uln=1.2),
        0.01,
        (cut(1.2, 0, 1), cut(1.8, 1, 2), cut(3.6, 2, 3), cut(12.0, 3, 4)),
        ">ULN - 1.5 x ULN", ">1.5 - 3.0 x ULN", ">3.0 - 10.0 x ULN", ">10.0 x ULN"),
)  # fmt: skip

CREATININE = (
    col("Creatinine increased", T.CREATININE, HIGH, "umol/L", References(57, 100), 1,
        (cut(100, 0, 1), cut(150, 1, 2), cut(300, 2, 3), cut(600, 3, 4)),
        ">ULN - 1.5 x ULN", ">1.5 - 3.0 x ULN", ">3.0 - 6.0 x ULN", ">6.0 x ULN"),
    col("Creatinine increased", T.CREATININE, HIGH, "mg/dL", References(0.6, 1.2), 0.01,
        (cut(1.2, 0, 1), cut(1.8, 1, 2), cut(3.6, 2, 3), cut(7.2, 3, 4)),
        ">ULN - 1.5 x ULN", ">1.5 - 3.0 x ULN", ">3.0 - 6.0 x ULN", ">6.0 x ULN"),
    # Baseline 50 umol/L, ULN 100: anything above ULN is already >1.5 x baseline (G2); above
    # 150 (3.0 x baseline) G3; only >6.0 x ULN reaches G4. The worse criterion wins.
    col("Creatinine increased", T.CREATININE, HIGH, "umol/L", References(57, 100, 50), 1,
        (cut(100, 0, 2), cut(150, 2, 3), cut(600, 3, 4)),
        ">1.5 - 3.0 x baseline", ">3.0 baseline", ">6.0 x ULN"),
    col("Creatinine increased", T.CREATININE, HIGH, "mg/dL", References(0.6, 1.2, 0.6), 0.01,
        (cut(1.2, 0, 2), cut(1.8, 2, 3), cut(7.2, 3, 4)),
        ">1.5 - 3.0 x baseline", ">3.0 baseline", ">6.0 x ULN"),
)  # fmt: skip

HYPERURICEMIA = (  # G2 is "-", G3 needs "physiologic consequences": the value jumps G1 -> G4
    col("Hyperuricemia", T.URATE, HIGH, "mmol/L", References(0.2, 0.42), 0.01,
        (cut(0.42, 0, 1), cut(0.59, 1, 4)), ">ULN - 10 mg/dL (0.59 mmol/L)", ">0.59 mmol/L"),
    col("Hyperuricemia", T.URATE, HIGH, "mg/dL", References(3.4, 7.0), 0.1,
        (cut(7.0, 0, 1), cut(10, 1, 4)), ">ULN - 10 mg/dL", ">10 mg/dL"),
)  # fmt: skip

CHOLESTEROL = (
    col("Cholesterol high", T.CHOLESTEROL, HIGH, "mmol/L", References(uln=5.2), 0.01,
        (cut(5.2, 0, 1), cut(7.75, 1, 2), cut(10.34, 2, 3), cut(12.92, 3, 4)),
        ">ULN - 7.75 mmol/L", ">7.75 - 10.34 mmol/L", ">10.34 - 12.92 mmol/L", ">12.92 mmol/L"),
    col("Cholesterol high", T.CHOLESTEROL, HIGH, "mg/dL", References(uln=200), 1,
        (cut(200, 0, 1), cut(300, 1, 2), cut(400, 2, 3), cut(500, 3, 4)),
        ">ULN - 300 mg/dL", ">300 - 400 mg/dL", ">400 - 500 mg/dL", ">500 mg/dL"),
)  # fmt: skip

HYPERTRIGLYCERIDEMIA = (  # G1 printed without ">": 150 mg/dL / 1.71 mmol/L are grade 1
    col("Hypertriglyceridemia", T.TRIGLYCERIDES, HIGH, "mmol/L", References(uln=1.70), 0.01,
        (cut(1.71, 0, 1, True), cut(3.42, 1, 2), cut(5.7, 2, 3), cut(11.4, 3, 4)),
        "1.71 mmol/L - 3.42 mmol/L", ">3.42 mmol/L - 5.7 mmol/L", ">5.7 mmol/L - 11.4 mmol/L",
        ">11.4 mmol/L"),
    col("Hypertriglyceridemia", T.TRIGLYCERIDES, HIGH, "mg/dL", References(uln=149), 1,
        (cut(150, 0, 1, True), cut(300, 1, 2), cut(500, 2, 3), cut(1000, 3, 4)),
        "150 mg/dL - 300 mg/dL", ">300 mg/dL - 500 mg/dL", ">500 mg/dL - 1000 mg/dL",
        ">1000 mg/dL"),
)  # fmt: skip

HYPERGLYCEMIA = (
    col("Hyperglycemia", T.GLUCOSE, HIGH, "mmol/L", References(3.9, 6.1, fasting=True), 0.1,
        (cut(6.1, 0, 1), cut(8.9, 1, 2), cut(13.9, 2, 3), cut(27.8, 3, 4)),
        "Fasting glucose value >ULN - 8.9 mmol/L", "Fasting glucose value >8.9 - 13.9 mmol/L",
        ">13.9 - 27.8 mmol/L", ">27.8 mmol/L"),
    col("Hyperglycemia", T.GLUCOSE, HIGH, "mg/dL", References(70, 110, fasting=True), 1,
        (cut(110, 0, 1), cut(160, 1, 2), cut(250, 2, 3), cut(500, 3, 4)),
        "Fasting glucose value >ULN - 160 mg/dL", "Fasting glucose value >160 - 250 mg/dL",
        ">250 - 500 mg/dL", ">500 mg/dL"),
    # Not fasting: grades 1 and 2 are defined for fasting glucose only, so 0, then 3 and 4.
    col("Hyperglycemia", T.GLUCOSE, HIGH, "mmol/L", References(3.9, 6.1, fasting=False), 0.1,
        (cut(13.9, 0, 3), cut(27.8, 3, 4)), ">13.9 - 27.8 mmol/L", ">27.8 mmol/L"),
    col("Hyperglycemia", T.GLUCOSE, HIGH, "mg/dL", References(70, 110, fasting=False), 1,
        (cut(250, 0, 3), cut(500, 3, 4)), ">250 - 500 mg/dL", ">500 mg/dL"),
)  # fmt: skip

HYPOGLYCEMIA = (
    col("Hypoglycemia", T.GLUCOSE, LOW, "mmol/L", References(3.9, 6.1), 0.1,
        (cut(3.9, 0, 1), cut(3.0, 1, 2), cut(2.2, 2, 3), cut(1.7, 3, 4)),
        "<LLN - 3.0 mmol/L", "<3.0 - 2.2 mmol/L", "<2.2 - 1.7 mmol/L", "<1.7 mmol/L"),
    col("Hypoglycemia", T.GLUCOSE, LOW, "mg/dL", References(70, 110), 1,
        (cut(70, 0, 1), cut(55, 1, 2), cut(40, 2, 3), cut(30, 3, 4)),
        "<LLN - 55 mg/dL", "<55 - 40 mg/dL", "<40 - 30 mg/dL", "<30 mg/dL"),
)  # fmt: skip

HYPOALBUMINEMIA = (
    col("Hypoalbuminemia", T.ALBUMIN, LOW, "g/L", References(35, 50), 1,
        (cut(35, 0, 1), cut(30, 1, 2), cut(20, 2, 3)),
        "<LLN - 30 g/L", "<30 - 20 g/L", "<20 g/L"),
    col("Hypoalbuminemia", T.ALBUMIN, LOW, "g/dL", References(3.5, 5.0), 0.1,
        (cut(3.5, 0, 1), cut(3.0, 1, 2), cut(2.0, 2, 3)),
        "<LLN - 3 g/dL", "<3 - 2 g/dL", "<2 g/dL"),
)  # fmt: skip

# Potassium, sodium and ionized calcium print mmol/L only (SI = conventional): the second
# column is mEq/L, which is the same number for K+ and Na+ and twice the mmol/L for Ca2+.
K_REFS, NA_REFS = References(3.5, 5.3), References(135, 145)
HYPERKALEMIA = tuple(
    col("Hyperkalemia", T.POTASSIUM, HIGH, unit, K_REFS, 0.1,
        (cut(5.3, 0, 1), cut(5.5, 1, 2), cut(6.0, 2, 3), cut(7.0, 3, 4)),
        ">ULN - 5.5 mmol/L", ">5.5 - 6.0 mmol/L", ">6.0 - 7.0 mmol/L", ">7.0 mmol/L")
    for unit in ("mmol/L", "mEq/L")
)  # fmt: skip
HYPOKALEMIA = tuple(  # G2 is "<LLN - 3.0 mmol/L; symptomatic": the value gives G1, then G3
    col("Hypokalemia", T.POTASSIUM, LOW, unit, K_REFS, 0.1,
        (cut(3.5, 0, 1), cut(3.0, 1, 3), cut(2.5, 3, 4)),
        "<LLN - 3.0 mmol/L", "<3.0 - 2.5 mmol/L", "<2.5 mmol/L")
    for unit in ("mmol/L", "mEq/L")
)  # fmt: skip
HYPERNATREMIA = tuple(
    col("Hypernatremia", T.SODIUM, HIGH, unit, NA_REFS, 1,
        (cut(145, 0, 1), cut(150, 1, 2), cut(155, 2, 3), cut(160, 3, 4)),
        ">ULN - 150 mmol/L", ">150 - 155 mmol/L", ">155 - 160 mmol/L", ">160 mmol/L")
    for unit in ("mmol/L", "mEq/L")
)  # fmt: skip
HYPONATREMIA = tuple(  # no grade 2 in v4.03
    col("Hyponatremia", T.SODIUM, LOW, unit, NA_REFS, 1,
        (cut(135, 0, 1), cut(130, 1, 3), cut(120, 3, 4)),
        "<LLN - 130 mmol/L", "<130 - 120 mmol/L", "<120 mmol/L")
    for unit in ("mmol/L", "mEq/L")
)  # fmt: skip

HYPERCALCEMIA = (  # corrected serum calcium (CA)
    col("Hypercalcemia", T.CALCIUM, HIGH, "mmol/L", References(2.15, 2.55), 0.01,
        (cut(2.55, 0, 1), cut(2.9, 1, 2), cut(3.1, 2, 3), cut(3.4, 3, 4)),
        ">ULN - 2.9 mmol/L", ">2.9 - 3.1 mmol/L", ">3.1 - 3.4 mmol/L", ">3.4 mmol/L"),
    col("Hypercalcemia", T.CALCIUM, HIGH, "mg/dL", References(8.6, 10.2), 0.1,
        (cut(10.2, 0, 1), cut(11.5, 1, 2), cut(12.5, 2, 3), cut(13.5, 3, 4)),
        ">ULN - 11.5 mg/dL", ">11.5 - 12.5 mg/dL", ">12.5 - 13.5 mg/dL", ">13.5 mg/dL"),
)  # fmt: skip
HYPOCALCEMIA = (
    col("Hypocalcemia", T.CALCIUM, LOW, "mmol/L", References(2.15, 2.55), 0.01,
        (cut(2.15, 0, 1), cut(2.0, 1, 2), cut(1.75, 2, 3), cut(1.5, 3, 4)),
        "<LLN - 2.0 mmol/L", "<2.0 - 1.75 mmol/L", "<1.75 - 1.5 mmol/L", "<1.5 mmol/L"),
    col("Hypocalcemia", T.CALCIUM, LOW, "mg/dL", References(8.6, 10.2), 0.1,
        (cut(8.6, 0, 1), cut(8.0, 1, 2), cut(7.0, 2, 3), cut(6.0, 3, 4)),
        "<LLN - 8.0 mg/dL", "<8.0 - 7.0 mg/dL", "<7.0 - 6.0 mg/dL", "<6.0 mg/dL"),
)  # fmt: skip
HYPERCALCEMIA_IONIZED = (
    col("Hypercalcemia", T.IONIZED_CALCIUM, HIGH, "mmol/L", References(1.12, 1.32), 0.01,
        (cut(1.32, 0, 1), cut(1.5, 1, 2), cut(1.6, 2, 3), cut(1.8, 3, 4)),
        "Ionized calcium >ULN - 1.5 mmol/L", "Ionized calcium >1.5 - 1.6 mmol/L",
        "Ionized calcium >1.6 - 1.8 mmol/L", "Ionized calcium >1.8 mmol/L"),
    col("Hypercalcemia", T.IONIZED_CALCIUM, HIGH, "mEq/L", References(2.24, 2.64), 0.02,
        (cut(2.64, 0, 1), cut(3.0, 1, 2), cut(3.2, 2, 3), cut(3.6, 3, 4)),
        "Ionized calcium >ULN - 1.5 mmol/L", "Ionized calcium >1.8 mmol/L"),
)  # fmt: skip
HYPOCALCEMIA_IONIZED = (
    col("Hypocalcemia", T.IONIZED_CALCIUM, LOW, "mmol/L", References(1.12, 1.32), 0.01,
        (cut(1.12, 0, 1), cut(1.0, 1, 2), cut(0.9, 2, 3), cut(0.8, 3, 4)),
        "Ionized calcium <LLN - 1.0 mmol/L", "Ionized calcium <1.0 - 0.9 mmol/L",
        "Ionized calcium <0.9 - 0.8 mmol/L", "Ionized calcium <0.8 mmol/L"),
    col("Hypocalcemia", T.IONIZED_CALCIUM, LOW, "mEq/L", References(2.24, 2.64), 0.02,
        (cut(2.24, 0, 1), cut(2.0, 1, 2), cut(1.8, 2, 3), cut(1.6, 3, 4)),
        "Ionized calcium <LLN - 1.0 mmol/L", "Ionized calcium <0.8 mmol/L"),
)  # fmt: skip

HYPERMAGNESEMIA = (  # no grade 2 in v4.03
    col("Hypermagnesemia", T.MAGNESIUM, HIGH, "mmol/L", References(0.66, 1.05), 0.01,
        (cut(1.05, 0, 1), cut(1.23, 1, 3), cut(3.30, 3, 4)),
        ">ULN - 1.23 mmol/L", ">1.23 - 3.30 mmol/L", ">3.30 mmol/L"),
    col("Hypermagnesemia", T.MAGNESIUM, HIGH, "mg/dL", References(1.6, 2.6), 0.1,
        (cut(2.6, 0, 1), cut(3.0, 1, 3), cut(8.0, 3, 4)),
        ">ULN - 3.0 mg/dL", ">3.0 - 8.0 mg/dL", ">8.0 mg/dL"),
)  # fmt: skip
HYPOMAGNESEMIA = (
    col("Hypomagnesemia", T.MAGNESIUM, LOW, "mmol/L", References(0.66, 1.05), 0.01,
        (cut(0.66, 0, 1), cut(0.5, 1, 2), cut(0.4, 2, 3), cut(0.3, 3, 4)),
        "<LLN - 0.5 mmol/L", "<0.5 - 0.4 mmol/L", "<0.4 - 0.3 mmol/L", "<0.3 mmol/L"),
    col("Hypomagnesemia", T.MAGNESIUM, LOW, "mg/dL", References(1.6, 2.6), 0.1,
        (cut(1.6, 0, 1), cut(1.2, 1, 2), cut(0.9, 2, 3), cut(0.7, 3, 4)),
        "<LLN - 1.2 mg/dL", "<1.2 - 0.9 mg/dL", "<0.9 - 0.7 mg/dL", "<0.7 mg/dL"),
)  # fmt: skip
HYPOPHOSPHATEMIA = (
    col("Hypophosphatemia", T.PHOSPHATE, LOW, "mmol/L", References(0.87, 1.45), 0.01,
        (cut(0.87, 0, 1), cut(0.8, 1, 2), cut(0.6, 2, 3), cut(0.3, 3, 4)),
        "<LLN - 0.8 mmol/L", "<0.8 - 0.6 mmol/L", "<0.6 - 0.3 mmol/L", "<0.3 mmol/L"),
    col("Hypophosphatemia", T.PHOSPHATE, LOW, "mg/dL", References(2.7, 4.5), 0.1,
        (cut(2.7, 0, 1), cut(2.5, 1, 2), cut(2.0, 2, 3), cut(1.0, 3, 4)),
        "<LLN - 2.5 mg/dL", "<2.5 - 2.0 mg/dL", "<2.0 - 1.0 mg/dL", "<1.0 mg/dL"),
)  # fmt: skip

TABLE: tuple[Column, ...] = (
    *ANEMIA, *HEMOGLOBIN_INCREASED, *WBC_DECREASED, *LEUKOCYTOSIS, *NEUTROPHILS,
    *LYMPHOCYTES_DECREASED, *LYMPHOCYTES_INCREASED, *CD4_DECREASED, *PLATELETS, *INR, *APTT,
    *FIBRINOGEN, *HAPTOGLOBIN, *ALT, *AST, *ALP, *GGT, *BILIRUBIN, *CPK, *AMYLASE, *LIPASE,
    *CREATININE, *HYPERURICEMIA, *CHOLESTEROL, *HYPERTRIGLYCERIDEMIA, *HYPERGLYCEMIA,
    *HYPOGLYCEMIA, *HYPOALBUMINEMIA, *HYPERKALEMIA, *HYPOKALEMIA, *HYPERNATREMIA,
    *HYPONATREMIA, *HYPERCALCEMIA, *HYPOCALCEMIA, *HYPERCALCEMIA_IONIZED, *HYPOCALCEMIA_IONIZED,
    *HYPERMAGNESEMIA, *HYPOMAGNESEMIA, *HYPOPHOSPHATEMIA,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The table itself: complete, in both unit systems, and transcribed from the NCI CSV
# ---------------------------------------------------------------------------------------------


def _csv_rows() -> dict[str, str]:
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        return {
            row["term"]: " ".join(row[f"grade{g}"] for g in range(1, 6))
            for row in csv.DictReader(handle)
        }


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_table_has_every_term_and_test_pair_graded() -> None:
    graded = {(term.term, term.test) for term in LAB_TERMS}
    tabled = {(column.term, column.test) for column in TABLE}
    assert graded == tabled
    assert len(graded) == 39  # 37 distinct terms; hyper/hypocalcemia for both CA and CAION


def test_the_table_covers_both_unit_columns_of_every_test() -> None:
    for term, test in {(column.term, column.test) for column in TABLE}:
        definition = LAB_DEFINITIONS[test]
        units = {column.unit for column in TABLE if (column.term, column.test) == (term, test)}
        assert {definition.si_unit, definition.conventional_unit} <= units, (term, units)


@pytest.mark.parametrize("column", TABLE, ids=lambda c: f"{c.term} [{c.label}]")
def test_every_table_row_quotes_the_nci_csv_criterion(column: Column) -> None:
    printed = _squeeze(_csv_rows()[column.term])
    for fragment in column.printed:
        assert _squeeze(fragment) in printed, fragment


@pytest.mark.parametrize("column", TABLE, ids=lambda c: f"{c.term} [{c.label}]")
def test_every_table_step_stays_between_neighbouring_thresholds(column: Column) -> None:
    # Between two cuts the step must be shorter than the gap; it may reach a normal limit that
    # is not a cut itself (the grade there is the milder one: inside the normal range).
    cuts = sorted(c.value for c in column.cuts)
    assert all(column.step < b - a for a, b in pairwise(cuts)), cuts
    for limit in (column.refs.lln, column.refs.uln):
        if limit is not None and limit not in cuts:
            assert all(abs(c - limit) >= column.step * (1 - 1e-9) for c in cuts), limit


# ---------------------------------------------------------------------------------------------
# Boundaries, one test per term
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*ANEMIA))
def test_anemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HEMOGLOBIN_INCREASED))
def test_hemoglobin_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*WBC_DECREASED))
def test_white_blood_cell_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*LEUKOCYTOSIS))
def test_leukocytosis_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*NEUTROPHILS))
def test_neutrophil_count_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*LYMPHOCYTES_DECREASED))
def test_lymphocyte_count_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*LYMPHOCYTES_INCREASED))
def test_lymphocyte_count_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*CD4_DECREASED))
def test_cd4_lymphocytes_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*PLATELETS))
def test_platelet_count_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*INR))
def test_inr_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*APTT))
def test_aptt_prolonged_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*FIBRINOGEN))
def test_fibrinogen_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HAPTOGLOBIN))
def test_haptoglobin_decreased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*ALT))
def test_alanine_aminotransferase_increased_boundaries(
    column: Column, value: float, grade: int
) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*AST))
def test_aspartate_aminotransferase_increased_boundaries(
    column: Column, value: float, grade: int
) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*ALP))
def test_alkaline_phosphatase_increased_boundaries(
    column: Column, value: float, grade: int
) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*GGT))
def test_ggt_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*BILIRUBIN))
def test_blood_bilirubin_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*CPK))
def test_cpk_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*AMYLASE))
def test_serum_amylase_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*LIPASE))
def test_lipase_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*CREATININE))
def test_creatinine_increased_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERURICEMIA))
def test_hyperuricemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*CHOLESTEROL))
def test_cholesterol_high_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERTRIGLYCERIDEMIA))
def test_hypertriglyceridemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERGLYCEMIA))
def test_hyperglycemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOGLYCEMIA))
def test_hypoglycemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOALBUMINEMIA))
def test_hypoalbuminemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERKALEMIA))
def test_hyperkalemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOKALEMIA))
def test_hypokalemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERNATREMIA))
def test_hypernatremia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPONATREMIA))
def test_hyponatremia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERCALCEMIA))
def test_hypercalcemia_corrected_calcium_boundaries(
    column: Column, value: float, grade: int
) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOCALCEMIA))
def test_hypocalcemia_corrected_calcium_boundaries(
    column: Column, value: float, grade: int
) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERCALCEMIA_IONIZED))
def test_hypercalcemia_ionized_calcium_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOCALCEMIA_IONIZED))
def test_hypocalcemia_ionized_calcium_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPERMAGNESEMIA))
def test_hypermagnesemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOMAGNESEMIA))
def test_hypomagnesemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


@pytest.mark.parametrize(("column", "value", "grade"), boundary_cases(*HYPOPHOSPHATEMIA))
def test_hypophosphatemia_boundaries(column: Column, value: float, grade: int) -> None:
    check(column, value, grade)


# ---------------------------------------------------------------------------------------------
# Inside the normal range; missing references
# ---------------------------------------------------------------------------------------------

# A typical normal result and its range, per test, in the SI and the conventional unit.
NORMAL_RESULTS = [
    (T.WBC, 6.0, "10*9/L", References(3.5, 9.5)),
    (T.WBC, 6000, "/mm3", References(3500, 9500)),
    (T.ANC, 3.5, "10*9/L", References(1.8, 6.3)),
    (T.ANC, 3500, "/mm3", References(1800, 6300)),
    (T.LYMPHOCYTES, 2.0, "10*9/L", References(1.1, 3.2)),
    (T.LYMPHOCYTES, 2000, "/mm3", References(1100, 3200)),
    (T.CD4, 0.9, "10*9/L", References(0.6, 1.6)),
    (T.CD4, 900, "/mm3", References(600, 1600)),
    (T.PLATELETS, 250, "10*9/L", References(125, 350)),
    (T.PLATELETS, 250_000, "/mm3", References(125_000, 350_000)),
    (T.HEMOGLOBIN, 150, "g/L", HGB_SI),
    (T.HEMOGLOBIN, 15.0, "g/dL", HGB_CONV),
    (T.INR, 1.0, "1", References(0.8, 1.2)),
    (T.APTT, 30, "s", References(25, 35)),
    (T.FIBRINOGEN, 3.0, "g/L", References(2.0, 4.0, baseline=3.9)),
    (T.FIBRINOGEN, 300, "mg/dL", References(200, 400, baseline=390)),
    (T.HAPTOGLOBIN, 1.0, "g/L", References(0.3, 2.0)),
    (T.HAPTOGLOBIN, 100, "mg/dL", References(30, 200)),
    (T.ALT, 25, "U/L", References(7, 40)),
    (T.AST, 25, "U/L", References(13, 35)),
    (T.ALKALINE_PHOSPHATASE, 80, "U/L", References(45, 125)),
    (T.GGT, 30, "U/L", References(10, 60)),
    (T.TOTAL_BILIRUBIN, 10, "umol/L", References(0, 21)),
    (T.TOTAL_BILIRUBIN, 0.6, "mg/dL", References(0.1, 1.2)),
    (T.CREATININE, 80, "umol/L", References(57, 111, baseline=55)),
    (T.CREATININE, 0.9, "mg/dL", References(0.6, 1.2, baseline=0.6)),
    (T.CREATINE_KINASE, 100, "U/L", References(50, 310)),
    (T.AMYLASE, 60, "U/L", References(35, 135)),
    (T.LIPASE, 30, "U/L", References(13, 60)),
    (T.CHOLESTEROL, 4.5, "mmol/L", References(2.8, 5.2)),
    (T.CHOLESTEROL, 180, "mg/dL", References(110, 200)),
    (T.TRIGLYCERIDES, 1.2, "mmol/L", References(0.4, 1.7)),
    (T.TRIGLYCERIDES, 100, "mg/dL", References(40, 149)),
    (T.GLUCOSE, 5.0, "mmol/L", References(3.9, 6.1)),
    (T.GLUCOSE, 90, "mg/dL", References(70, 110, fasting=True)),
    (T.POTASSIUM, 4.2, "mmol/L", References(3.5, 5.3)),
    (T.SODIUM, 140, "mmol/L", References(135, 145)),
    (T.CALCIUM, 2.3, "mmol/L", References(2.15, 2.55)),
    (T.CALCIUM, 9.4, "mg/dL", References(8.6, 10.2)),
    (T.IONIZED_CALCIUM, 1.2, "mmol/L", References(1.12, 1.32)),
    (T.MAGNESIUM, 0.85, "mmol/L", References(0.66, 1.05)),
    (T.MAGNESIUM, 2.0, "mg/dL", References(1.6, 2.6)),
    (T.PHOSPHATE, 1.1, "mmol/L", References(0.87, 1.45)),
    (T.PHOSPHATE, 3.5, "mg/dL", References(2.7, 4.5)),
    (T.URATE, 0.3, "mmol/L", References(0.2, 0.42)),
    (T.URATE, 5.0, "mg/dL", References(3.4, 7.0)),
    (T.ALBUMIN, 42, "g/L", References(35, 50)),
    (T.ALBUMIN, 4.2, "g/dL", References(3.5, 5.0)),
]


@pytest.mark.parametrize(
    ("test", "value", "unit", "refs"),
    NORMAL_RESULTS,
    ids=[f"{t.value} {v:g} {u}" for t, v, u, _ in NORMAL_RESULTS],
)
def test_a_value_inside_the_normal_range_is_grade_0_for_every_term(
    test: LabTest, value: float, unit: str, refs: References
) -> None:
    results = grade_lab(test, value, unit, refs)
    assert {r.term for r in results} == {t.term for t in LAB_TERMS if t.test is test}
    for result in results:
        assert (result.grade, result.minimum_grade) == (0, 0), result.reason
        assert "within the normal limit" in result.reason


def test_every_graded_test_has_a_normal_result_above() -> None:
    assert {test for test, *_ in NORMAL_RESULTS} == {term.test for term in LAB_TERMS}


# A value just beyond the normal limit (below the printed grade-2 threshold) with the reference
# its grade 1 needs left out: the grade is undecided between 0 and 1.
UNDECIDED = [
    ("Anemia", T.HEMOGLOBIN, 120, "g/L", References(uln=175), "LLN"),
    ("Anemia", T.HEMOGLOBIN, 12.0, "g/dL", References(uln=17.5), "LLN"),
    ("Hemoglobin increased", T.HEMOGLOBIN, 180, "g/L", References(lln=130), "ULN"),
    ("White blood cell decreased", T.WBC, 3.2, "10*9/L", References(), "LLN"),
    ("White blood cell decreased", T.WBC, 3200, "/mm3", References(), "LLN"),
    ("Neutrophil count decreased", T.ANC, 1.6, "10*9/L", References(uln=6.3), "LLN"),
    ("Neutrophil count decreased", T.ANC, 1600, "/mm3", References(uln=6300), "LLN"),
    ("Lymphocyte count decreased", T.LYMPHOCYTES, 0.9, "10*9/L", References(), "LLN"),
    ("CD4 lymphocytes decreased", T.CD4, 550, "/mm3", References(), "LLN"),
    ("Platelet count decreased", T.PLATELETS, 100, "10*9/L", References(), "LLN"),
    ("Platelet count decreased", T.PLATELETS, 100_000, "/mm3", References(), "LLN"),
    ("INR increased", T.INR, 1.4, "1", References(lln=0.8), "ULN"),
    ("Activated partial thromboplastin time prolonged", T.APTT, 40, "s", References(), "ULN"),
    ("Fibrinogen decreased", T.FIBRINOGEN, 1.9, "g/L", References(uln=4.0), "LLN"),
    ("Haptoglobin decreased", T.HAPTOGLOBIN, 20, "mg/dL", References(), "LLN"),
    ("Alanine aminotransferase increased", T.ALT, 500, "U/L", References(lln=7), "ULN"),
    ("Aspartate aminotransferase increased", T.AST, 50, "U/L", References(), "ULN"),
    ("Alkaline phosphatase increased", T.ALKALINE_PHOSPHATASE, 150, "U/L", References(), "ULN"),
    ("GGT increased", T.GGT, 70, "U/L", References(), "ULN"),
    ("Blood bilirubin increased", T.TOTAL_BILIRUBIN, 30, "umol/L", References(), "ULN"),
    ("Blood bilirubin increased", T.TOTAL_BILIRUBIN, 1.5, "mg/dL", References(), "ULN"),
    ("CPK increased", T.CREATINE_KINASE, 400, "U/L", References(), "ULN"),
    ("Serum amylase increased", T.AMYLASE, 150, "U/L", References(), "ULN"),
    ("Lipase increased", T.LIPASE, 70, "U/L", References(), "ULN"),
    ("Creatinine increased", T.CREATININE, 120, "umol/L", References(), "ULN"),
    ("Hyperuricemia", T.URATE, 0.5, "mmol/L", References(), "ULN"),
    ("Hyperuricemia", T.URATE, 8.0, "mg/dL", References(), "ULN"),
    ("Cholesterol high", T.CHOLESTEROL, 6.0, "mmol/L", References(), "ULN"),
    ("Cholesterol high", T.CHOLESTEROL, 250, "mg/dL", References(), "ULN"),
    ("Hypoglycemia", T.GLUCOSE, 3.5, "mmol/L", References(), "LLN"),
    ("Hypoglycemia", T.GLUCOSE, 60, "mg/dL", References(), "LLN"),
    ("Hypoalbuminemia", T.ALBUMIN, 32, "g/L", References(), "LLN"),
    ("Hypoalbuminemia", T.ALBUMIN, 3.2, "g/dL", References(), "LLN"),
    ("Hyperkalemia", T.POTASSIUM, 5.4, "mmol/L", References(lln=3.5), "ULN"),
    ("Hypokalemia", T.POTASSIUM, 3.2, "mmol/L", References(uln=5.3), "LLN"),
    ("Hypernatremia", T.SODIUM, 148, "mmol/L", References(), "ULN"),
    ("Hyponatremia", T.SODIUM, 132, "mmol/L", References(), "LLN"),
    ("Hypercalcemia", T.CALCIUM, 2.7, "mmol/L", References(), "ULN"),
    ("Hypercalcemia", T.CALCIUM, 11.0, "mg/dL", References(), "ULN"),
    ("Hypocalcemia", T.CALCIUM, 2.05, "mmol/L", References(), "LLN"),
    ("Hypocalcemia", T.CALCIUM, 8.2, "mg/dL", References(), "LLN"),
    ("Hypercalcemia", T.IONIZED_CALCIUM, 1.4, "mmol/L", References(), "ULN"),
    ("Hypocalcemia", T.IONIZED_CALCIUM, 1.05, "mmol/L", References(), "LLN"),
    ("Hypermagnesemia", T.MAGNESIUM, 1.1, "mmol/L", References(), "ULN"),
    ("Hypermagnesemia", T.MAGNESIUM, 2.8, "mg/dL", References(), "ULN"),
    ("Hypomagnesemia", T.MAGNESIUM, 0.6, "mmol/L", References(), "LLN"),
    ("Hypomagnesemia", T.MAGNESIUM, 1.4, "mg/dL", References(), "LLN"),
    ("Hypophosphatemia", T.PHOSPHATE, 0.82, "mmol/L", References(), "LLN"),
    ("Hypophosphatemia", T.PHOSPHATE, 2.6, "mg/dL", References(), "LLN"),
]


def _term_result(test: LabTest, term: str, value: float, unit: str, refs: References):
    (result,) = [r for r in grade_lab(test, value, unit, refs) if r.term == term]
    return result


@pytest.mark.parametrize(
    ("term", "test", "value", "unit", "refs", "missing"),
    UNDECIDED,
    ids=[f"{term} [{test.value}] {v:g} {u}" for term, test, v, u, _, _ in UNDECIDED],
)
def test_a_missing_normal_limit_leaves_grade_0_or_1_undecided(
    term: str, test: LabTest, value: float, unit: str, refs: References, missing: str
) -> None:
    result = _term_result(test, term, value, unit, refs)
    assert result.grade is None
    assert result.minimum_grade == 0
    assert missing in result.missing
    assert f"{missing} not given" in result.reason or f"{missing} and" in result.reason
    assert "not given" in result.reason and "grade cannot be decided" in result.reason


def test_every_term_that_needs_a_normal_limit_has_an_undecided_example() -> None:
    needing = {
        (t.term, t.test)
        for t in LAB_TERMS
        if t.term not in {"Leukocytosis", "Lymphocyte count increased", "Hypertriglyceridemia"}
        and t.term != "Hyperglycemia"  # its ULN band also needs fasting status: tested below
    }
    assert needing == {(term, test) for term, test, *_ in UNDECIDED}


@pytest.mark.parametrize(
    ("term", "test", "value", "unit", "grade"),
    [
        ("Neutrophil count decreased", T.ANC, 1.2, "10*9/L", 2),
        ("Neutrophil count decreased", T.ANC, 400, "/mm3", 4),
        ("Platelet count decreased", T.PLATELETS, 30, "10*9/L", 3),
        ("White blood cell decreased", T.WBC, 2500, "/mm3", 2),
        ("Lymphocyte count decreased", T.LYMPHOCYTES, 0.1, "10*9/L", 4),
        ("CD4 lymphocytes decreased", T.CD4, 0.3, "10*9/L", 2),
        ("Anemia", T.HEMOGLOBIN, 85, "g/L", 2),
        ("Anemia", T.HEMOGLOBIN, 7.9, "g/dL", 3),
        ("Hypoalbuminemia", T.ALBUMIN, 2.5, "g/dL", 2),
        ("Hypokalemia", T.POTASSIUM, 2.8, "mmol/L", 3),
        ("Hyperkalemia", T.POTASSIUM, 5.8, "mmol/L", 2),
        ("Hyponatremia", T.SODIUM, 125, "mmol/L", 3),
        ("Hypernatremia", T.SODIUM, 152, "mmol/L", 2),
        ("Hypomagnesemia", T.MAGNESIUM, 0.8, "mg/dL", 3),
        ("Hypermagnesemia", T.MAGNESIUM, 2.0, "mmol/L", 3),
        ("Hypophosphatemia", T.PHOSPHATE, 0.5, "mmol/L", 3),
        ("Hypocalcemia", T.CALCIUM, 6.5, "mg/dL", 3),
        ("Hypercalcemia", T.IONIZED_CALCIUM, 1.7, "mmol/L", 3),
        ("Cholesterol high", T.CHOLESTEROL, 450, "mg/dL", 3),
        ("Hypoglycemia", T.GLUCOSE, 2.0, "mmol/L", 3),
        ("Hyperuricemia", T.URATE, 11, "mg/dL", 4),
        ("Fibrinogen decreased", T.FIBRINOGEN, 45, "mg/dL", 4),
        ("Fibrinogen decreased", T.FIBRINOGEN, 0.49, "g/L", 4),
        ("Hypertriglyceridemia", T.TRIGLYCERIDES, 400, "mg/dL", 2),
        ("Leukocytosis", T.WBC, 120, "10*9/L", 3),
        ("Lymphocyte count increased", T.LYMPHOCYTES, 5000, "/mm3", 2),
    ],
)
def test_an_absolute_threshold_grades_without_the_normal_limit(
    term: str, test: LabTest, value: float, unit: str, grade: int
) -> None:
    result = _term_result(test, term, value, unit, References())
    assert (result.grade, result.minimum_grade) == (grade, grade), result.reason


def test_a_bounded_result_below_a_threshold_proves_at_least_that_grade() -> None:
    (result,) = grade_reported(T.ANC, 1.0, "10*9/L", "<", References(lln=1.8))
    assert result.grade is None and result.minimum_grade == 3
    assert "not given" in result.reason and "at least grade 3" in result.reason


# ---------------------------------------------------------------------------------------------
# Creatinine: the worse of ULN and baseline
# ---------------------------------------------------------------------------------------------

CREAT_REFS = dict(lln=57, uln=100)


@pytest.mark.parametrize(
    ("value", "baseline", "grade", "criterion"),
    [
        (120, 100, 1, ">ULN - 1.5 x ULN"),  # 1.2 x ULN, 1.2 x baseline: both G1
        (120, 70, 2, ">1.5 - 3.0 x baseline"),  # 1.2 x ULN (G1) but 1.71 x baseline (G2)
        (120, 80, 1, None),  # exactly 1.5 x baseline is still G1
        (160, 50, 3, ">3.0 baseline"),  # 1.6 x ULN (G2), 3.2 x baseline (G3)
        (150, 50, 2, None),  # exactly 3.0 x baseline and 1.5 x ULN: G2 (baseline)
        (350, 200, 3, ">3.0 - 6.0 x ULN"),  # 1.75 x baseline (G2), 3.5 x ULN (G3)
        (700, 50, 4, ">6.0 x ULN"),  # G4 exists only against ULN
        (95, 40, 0, None),  # 2.4 x baseline but within the normal range: grade 0
    ],
)
def test_creatinine_takes_the_worse_of_uln_and_baseline_criteria(
    value: float, baseline: float, grade: int, criterion: str | None
) -> None:
    refs = References(**CREAT_REFS, baseline=baseline)
    result = _term_result(T.CREATININE, "Creatinine increased", value, "umol/L", refs)
    assert result.grade == grade, result.reason
    if criterion:
        assert result.criterion == criterion


def test_creatinine_without_baseline_is_graded_on_uln_and_says_so() -> None:
    result = _term_result(T.CREATININE, "Creatinine increased", 2.0, "mg/dL", References(uln=1.2))
    assert result.grade == 2  # 1.67 x ULN
    assert "baseline not known" in result.reason


def test_creatinine_in_mg_per_dl_and_umol_per_l_give_the_same_grade_against_baseline() -> None:
    si = _term_result(T.CREATININE, "Creatinine increased", 150, "umol/L", References(57, 100, 45))
    conventional = _term_result(
        T.CREATININE,
        "Creatinine increased",
        150 / 88.4,
        "mg/dL",
        References(57 / 88.4, 100 / 88.4, 45 / 88.4),
    )
    assert si.grade == conventional.grade == 3


# ---------------------------------------------------------------------------------------------
# Fibrinogen: LLN multiples, decrease from baseline, and the absolute <50 mg/dL
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "grade", "criterion"),
    [
        (2.9, 0, None),  # within the normal range whatever the baseline
        (1.95, 1, "<1.0 - 0.75 x LLN"),  # 2.5% below LLN, 18.75% decrease
        (1.8, 2, "25 - <50% decrease from baseline"),  # exactly 25% decrease
        (1.2, 3, "50 - <75% decrease from baseline"),  # exactly 50% decrease
        (0.6, 4, "75% decrease from baseline"),  # exactly 75% decrease
    ],
)
def test_fibrinogen_decrease_from_baseline_bands_include_their_percentage(
    value: float, grade: int, criterion: str | None
) -> None:
    refs = References(lln=2.0, uln=4.0, baseline=2.4)
    result = _term_result(T.FIBRINOGEN, "Fibrinogen decreased", value, "g/L", refs)
    assert result.grade == grade, result.reason
    if criterion:
        assert criterion in result.reason


@pytest.mark.parametrize(
    ("value", "unit", "lln", "grade"),
    [
        (49, "mg/dL", 150, 4),  # 0.33 x LLN (G3 by LLN) but <50 mg/dL
        (50, "mg/dL", 150, 3),  # exactly 50 mg/dL is not <50
        (0.49, "g/L", 1.5, 4),
        (0.5, "g/L", 1.5, 3),
        (49, "mg/dL", None, 4),  # no LLN needed below 50 mg/dL
    ],
)
def test_fibrinogen_below_50_mg_per_dl_is_grade_4_whatever_the_lln(
    value: float, unit: str, lln: float | None, grade: int
) -> None:
    result = _term_result(T.FIBRINOGEN, "Fibrinogen decreased", value, unit, References(lln=lln))
    assert result.grade == grade, result.reason


def test_fibrinogen_without_baseline_is_graded_on_lln_and_says_so() -> None:
    refs = References(lln=200, uln=400)
    result = _term_result(T.FIBRINOGEN, "Fibrinogen decreased", 190, "mg/dL", refs)
    assert result.grade == 1
    assert "baseline not known" in result.reason


# ---------------------------------------------------------------------------------------------
# Hemoglobin increased: above ULN, or above baseline when baseline is above ULN
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "baseline", "grade"),
    [
        (19.0, None, 1),  # 1.5 above ULN 17.5
        (19.0, 16.0, 1),  # baseline below ULN: still counted from ULN
        (19.0, 18.5, 1),  # 0.5 above a baseline that is above ULN
        (20.0, None, 2),  # 2.5 above ULN
        (20.0, 18.5, 1),  # but only 1.5 above the baseline
        (22.0, None, 3),  # 4.5 above ULN
        (22.0, 18.5, 2),  # 3.5 above the baseline
        (18.0, 18.5, 0),  # above ULN but below the subject's own baseline
    ],
)
def test_hemoglobin_increased_counts_from_baseline_only_when_baseline_is_above_uln(
    value: float, baseline: float | None, grade: int
) -> None:
    refs = References(lln=13.0, uln=17.5, baseline=baseline)
    result = _term_result(T.HEMOGLOBIN, "Hemoglobin increased", value, "g/dL", refs)
    assert result.grade == grade, result.reason


# ---------------------------------------------------------------------------------------------
# Hyperglycemia: grades 1-2 for fasting glucose only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "uln"),
    [(7.0, "mmol/L", 6.1), (9.5, "mmol/L", 6.1), (13.9, "mmol/L", 6.1), (200, "mg/dL", 110)],
)
def test_hyperglycemia_with_unknown_fasting_status_is_undecided_between_0_and_2(
    value: float, unit: str, uln: float
) -> None:
    result = _term_result(T.GLUCOSE, "Hyperglycemia", value, unit, References(uln=uln))
    assert result.grade is None and result.minimum_grade == 0
    assert result.missing == ("fasting status",)
    assert "fasting status not given" in result.reason


@pytest.mark.parametrize(
    ("value", "unit", "uln"),
    [(7.0, "mmol/L", 6.1), (9.5, "mmol/L", 6.1), (13.9, "mmol/L", 6.1), (250, "mg/dL", 110)],
)
def test_hyperglycemia_not_fasting_is_grade_0_up_to_the_grade_3_threshold(
    value: float, unit: str, uln: float
) -> None:
    refs = References(uln=uln, fasting=False)
    result = _term_result(T.GLUCOSE, "Hyperglycemia", value, unit, refs)
    assert (result.grade, result.minimum_grade) == (0, 0)


@pytest.mark.parametrize("fasting", [True, False, None])
@pytest.mark.parametrize(
    ("value", "unit", "grade"),
    [(14.0, "mmol/L", 3), (251, "mg/dL", 3), (27.9, "mmol/L", 4), (501, "mg/dL", 4)],
)
def test_hyperglycemia_grades_3_and_4_whatever_the_fasting_status(
    value: float, unit: str, grade: int, fasting: bool | None
) -> None:
    uln = 6.1 if unit == "mmol/L" else 110
    refs = References(uln=uln, fasting=fasting)
    result = _term_result(T.GLUCOSE, "Hyperglycemia", value, unit, refs)
    assert (result.grade, result.minimum_grade) == (grade, grade)


def test_hypoglycemia_does_not_depend_on_fasting_status() -> None:
    for fasting in (True, False, None):
        refs = References(lln=3.9, uln=6.1, fasting=fasting)
        assert _term_result(T.GLUCOSE, "Hypoglycemia", 2.9, "mmol/L", refs).grade == 2


# ---------------------------------------------------------------------------------------------
# Hypertriglyceridemia: grade 1 from exactly 150 mg/dL (1.71 mmol/L)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "uln", "grade"),
    [
        (150, "mg/dL", 140, 1),
        (149.9, "mg/dL", 140, 0),  # above ULN, below the printed 150: no grade
        (1.71, "mmol/L", 1.5, 1),
        (1.70, "mmol/L", 1.5, 0),
        (300, "mg/dL", 140, 1),  # "150 - 300": 300 is still grade 1
        (3.42, "mmol/L", 1.5, 1),
    ],
)
def test_hypertriglyceridemia_grade_1_includes_its_printed_lower_limit(
    value: float, unit: str, uln: float, grade: int
) -> None:
    refs = References(uln=uln)
    result = _term_result(T.TRIGLYCERIDES, "Hypertriglyceridemia", value, unit, refs)
    assert result.grade == grade, result.reason


# ---------------------------------------------------------------------------------------------
# Clinical-only grades: never inferred, named in the reason
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "term", "value", "unit", "refs", "grade", "named"),
    [
        (T.POTASSIUM, "Hypokalemia", 3.2, "mmol/L", K_REFS, 1, ("grade 2", "symptomatic")),
        (T.POTASSIUM, "Hypokalemia", 2.8, "mmol/L", K_REFS, 3, ("grade 3",)),
        (
            T.URATE,
            "Hyperuricemia",
            8.0,
            "mg/dL",
            References(3.4, 7.0),
            1,
            ("grade 3", "physiologic consequences"),
        ),
        (T.HEMOGLOBIN, "Anemia", 75, "g/L", HGB_SI, 3, ("grade 4", "life-threatening")),
        (T.ALBUMIN, "Hypoalbuminemia", 1.8, "g/dL", References(3.5, 5.0), 3, ("grade 4",)),
        (T.WBC, "Leukocytosis", 120, "10*9/L", References(3.5, 9.5), 3, ("leucostasis",)),
        (T.INR, "INR increased", 2.0, "1", References(0.8, 1.2), 2, ("anticoagulation",)),
        (T.CALCIUM, "Hypercalcemia", 3.0, "mmol/L", References(2.15, 2.55), 2, ("corrected",)),
    ],
)
def test_a_clinical_only_grade_is_not_inferred_and_the_reason_names_it(
    test: LabTest,
    term: str,
    value: float,
    unit: str,
    refs: References,
    grade: int,
    named: tuple[str, ...],
) -> None:
    result = _term_result(test, term, value, unit, refs)
    assert result.grade == grade
    for words in named:
        assert words in result.reason, result.reason


def test_a_clinical_note_about_a_milder_grade_is_left_out_once_the_value_is_worse() -> None:
    result = _term_result(T.POTASSIUM, "Hypokalemia", 2.8, "mmol/L", K_REFS)
    assert result.grade == 3
    assert "symptomatic" not in result.reason


def test_hypokalemia_below_lln_is_never_graded_2_from_the_value() -> None:
    grades = {
        _term_result(T.POTASSIUM, "Hypokalemia", v / 100, "mmol/L", K_REFS).grade
        for v in range(150, 360)
    }
    assert grades == {0, 1, 3, 4}


def test_anemia_and_hypoalbuminemia_never_reach_grade_4_from_the_value() -> None:
    anemia = _term_result(T.HEMOGLOBIN, "Anemia", 10, "g/L", HGB_SI)
    albumin = _term_result(T.ALBUMIN, "Hypoalbuminemia", 5, "g/L", References(35, 50))
    assert anemia.grade == albumin.grade == 3


# ---------------------------------------------------------------------------------------------
# Terms with a missing grade
# ---------------------------------------------------------------------------------------------


def _sweep(column: Column, start: float, stop: float, step: float) -> set[int | None]:
    count = round((stop - start) / step)
    return {grade_of(column, start + i * step).grade for i in range(count + 1)}


@pytest.mark.parametrize("column", HYPONATREMIA[:1] + HYPERMAGNESEMIA, ids=lambda c: c.label)
def test_hyponatremia_and_hypermagnesemia_have_no_grade_2(column: Column) -> None:
    low, high = (100.0, 145.0) if column.test is T.SODIUM else (0.5, 10.0)
    grades = _sweep(column, low, high, 0.01 if column.unit != "mg/dL" else 0.05)
    assert grades == {0, 1, 3, 4}


@pytest.mark.parametrize("column", LYMPHOCYTES_INCREASED, ids=lambda c: c.label)
def test_lymphocyte_count_increased_has_no_grade_1(column: Column) -> None:
    scale = 1000 if column.unit == "/mm3" else 1
    grades = _sweep(column, 0.5 * scale, 30 * scale, 0.05 * scale)
    assert grades == {0, 2, 3}


def test_hyperuricemia_has_no_grade_2_or_3_from_the_value() -> None:
    grades = _sweep(HYPERURICEMIA[1], 2.0, 15.0, 0.1)
    assert grades == {0, 1, 4}


# ---------------------------------------------------------------------------------------------
# Ionized calcium (CAION) and corrected serum calcium (CA) are different scales
# ---------------------------------------------------------------------------------------------


def test_ionized_and_corrected_calcium_are_separate_tests() -> None:
    assert resolve_test("CAION") is T.IONIZED_CALCIUM
    assert resolve_test("CAI") is T.IONIZED_CALCIUM
    assert resolve_test("1994-3") is T.IONIZED_CALCIUM
    assert resolve_test("CA") is T.CALCIUM
    assert resolve_test("2000-8") is T.CALCIUM


@pytest.mark.parametrize(
    ("test", "value", "low", "high"),
    [
        # 1.45 mmol/L: severe hypocalcemia as corrected total calcium, mild hypercalcemia ionized
        (T.CALCIUM, 1.45, 4, 0),
        (T.IONIZED_CALCIUM, 1.45, 0, 1),
        # 2.0 mmol/L: normal-ish total calcium, life-threatening ionized calcium
        (T.CALCIUM, 2.0, 1, 0),
        (T.IONIZED_CALCIUM, 2.0, 0, 4),
    ],
)
def test_the_same_mmol_per_l_grades_differently_as_ionized_and_corrected_calcium(
    test: LabTest, value: float, low: int, high: int
) -> None:
    refs = References(2.15, 2.55) if test is T.CALCIUM else References(1.12, 1.32)
    by_term = {r.term: r for r in grade_lab(test, value, "mmol/L", refs)}
    assert (by_term["Hypocalcemia"].grade, by_term["Hypercalcemia"].grade) == (low, high)
    wording = "Corrected serum calcium" if test is T.CALCIUM else "Ionized calcium"
    graded = by_term["Hypocalcemia"] if low else by_term["Hypercalcemia"]
    assert wording in graded.criterion


def test_corrected_calcium_reason_asks_for_albumin_correction() -> None:
    result = _term_result(T.CALCIUM, "Hypocalcemia", 1.9, "mmol/L", References(2.15, 2.55))
    assert result.grade == 2 and "corrected" in result.reason


def test_ionized_calcium_has_no_albumin_correction_note() -> None:
    result = _term_result(T.IONIZED_CALCIUM, "Hypocalcemia", 0.95, "mmol/L", References(1.12, 1.32))
    assert result.grade == 2 and "correct total calcium" not in result.reason


# ---------------------------------------------------------------------------------------------
# Fixed defects, kept as specifications; the strict xfail left is a known limitation:
# haemoglobin sent in mmol/L is graded on the g/L column.
# ---------------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="DEFECT: Hb in mmol/L is converted to g/L (x16.1145) and graded on the g/L column, "
    "so CTCAE's own mmol/L thresholds (6.2, 4.9) land one grade worse",
)
@pytest.mark.parametrize(("value", "grade"), [(6.2, 1), (4.9, 2)])
def test_anemia_in_mmol_per_l_at_the_printed_thresholds_keeps_the_milder_grade(
    value: float, grade: int
) -> None:
    # CSV Anemia: G1 "<LLN - 6.2 mmol/L", G2 "<6.2 - 4.9 mmol/L", G3 "<4.9 mmol/L"
    result = _term_result(T.HEMOGLOBIN, "Anemia", value, "mmol/L", References(8.1, 10.9))
    assert result.grade == grade, result.reason


def test_creatinine_without_uln_proves_no_grade_from_baseline_alone() -> None:
    refs = References(baseline=50)  # 90 umol/L is 1.8 x baseline
    result = _term_result(T.CREATININE, "Creatinine increased", 90, "umol/L", refs)
    with_uln = _term_result(
        T.CREATININE, "Creatinine increased", 90, "umol/L", References(uln=110, baseline=50)
    )
    assert with_uln.grade == 0
    assert result.grade is None and result.minimum_grade == 0


def test_fibrinogen_without_lln_proves_no_grade_from_baseline_alone() -> None:
    refs = References(baseline=4.0)  # 2.5 g/L is a 37.5% decrease
    result = _term_result(T.FIBRINOGEN, "Fibrinogen decreased", 2.5, "g/L", refs)
    assert result.grade is None and result.minimum_grade == 0


def test_hyperglycemia_fasting_without_uln_names_the_uln_as_missing() -> None:
    refs = References(lln=3.9, fasting=True)
    result = _term_result(T.GLUCOSE, "Hyperglycemia", 7.0, "mmol/L", refs)
    assert result.grade is None and result.minimum_grade == 0
    assert result.missing == ("ULN",)
    assert "fasting status not given" not in result.reason


@pytest.mark.parametrize(
    ("test", "term", "value", "unit", "refs"),
    [
        (T.WBC, "Leukocytosis", 15.0, "10*9/L", References(3.5, 9.5)),
        (T.GLUCOSE, "Hyperglycemia", 200, "mg/dL", References(70, 110, fasting=False)),
        (T.TRIGLYCERIDES, "Hypertriglyceridemia", 145, "mg/dL", References(uln=140)),
        (T.LYMPHOCYTES, "Lymphocyte count increased", 3.8, "10*9/L", References(1.1, 3.2)),
    ],
    ids=["WBC 15 (ULN 9.5)", "glucose 200 not fasting", "TG 145 (ULN 140)", "lymph 3.8"],
)
def test_a_grade_0_above_uln_is_not_called_within_the_normal_limit(
    test: LabTest, term: str, value: float, unit: str, refs: References
) -> None:
    result = _term_result(test, term, value, unit, refs)
    assert result.grade == 0
    assert "within the normal limit" not in result.reason


def test_hemoglobin_increased_without_baseline_says_the_baseline_was_not_known() -> None:
    refs = References(lln=13.0, uln=17.5)
    result = _term_result(T.HEMOGLOBIN, "Hemoglobin increased", 22.0, "g/dL", refs)
    assert result.grade in (3, None)
    assert "baseline" in result.reason and "not known" in result.reason
