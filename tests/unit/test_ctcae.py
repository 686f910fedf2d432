"""CTCAE v4.03 grading of the seven pipeline labs, at and around every threshold."""

import pytest

from shared.ctcae import CTCAE_VERSION, LAB_TERMS, References, grade_lab
from shared.labs import LAB_DEFINITIONS, LabTest, to_si

NORMAL_ANC = References(lln=1.8, uln=6.3)
NORMAL_PLT = References(lln=125, uln=350)
NORMAL_HGB = References(lln=130, uln=175)


def si(test: LabTest) -> str:
    return LAB_DEFINITIONS[test].si_unit


LOW_TERM = {LabTest.HEMOGLOBIN: "Anemia"}


def only_grade(test: LabTest, value: float, refs: References) -> int | None:
    (result,) = [r for r in grade_si(test, value, refs) if r.term == LOW_TERM.get(test, r.term)]
    return result.grade


def grade_si(test: LabTest, value: float, refs: References):
    return grade_lab(test, value, si(test), refs)


@pytest.mark.parametrize(
    ("value", "grade"),
    [
        (2.5, 0),
        (1.8, 0),
        (1.79, 1),
        (1.5, 1),  # exactly 1.5 is grade 1: "<1.5 - 1.0" is grade 2
        (1.49, 2),
        (1.0, 2),
        (0.99, 3),
        (0.9, 3),
        (0.5, 3),
        (0.49, 4),
        (0.0, 4),
    ],
)
def test_neutrophil_count_decreased(value: float, grade: int) -> None:
    assert only_grade(LabTest.ANC, value, NORMAL_ANC) == grade


@pytest.mark.parametrize(
    ("per_mm3", "grade"), [(1500, 1), (1499, 2), (1000, 2), (999, 3), (500, 3), (499, 4)]
)
def test_neutrophils_sent_per_mm3_grade_the_same(per_mm3: int, grade: int) -> None:
    value = to_si(LabTest.ANC, per_mm3, "/mm3")
    refs = References(lln=to_si(LabTest.ANC, 1800, "/mm3"))
    assert only_grade(LabTest.ANC, value, refs) == grade


@pytest.mark.parametrize(
    ("value", "grade"),
    [(125, 0), (124, 1), (75, 1), (74.9, 2), (50, 2), (49.9, 3), (25, 3), (24.9, 4)],
)
def test_platelet_count_decreased(value: float, grade: int) -> None:
    assert only_grade(LabTest.PLATELETS, value, NORMAL_PLT) == grade


@pytest.mark.parametrize(
    ("value", "unit", "grade"),
    [
        (130, "g/L", 0),
        (129, "g/L", 1),
        (100, "g/L", 1),
        (99, "g/L", 2),
        (80, "g/L", 2),
        (79, "g/L", 3),
        (10.0, "g/dL", 1),
        (9.9, "g/dL", 2),
        (8.0, "g/dL", 2),
        (7.9, "g/dL", 3),
    ],
)
def test_anemia_in_si_and_conventional_units(value: float, unit: str, grade: int) -> None:
    value_si = to_si(LabTest.HEMOGLOBIN, value, unit)
    assert only_grade(LabTest.HEMOGLOBIN, value_si, NORMAL_HGB) == grade


def test_anemia_grade_4_is_never_read_from_the_value() -> None:
    (result, _) = grade_si(LabTest.HEMOGLOBIN, 40, NORMAL_HGB)
    assert result.grade == 3
    assert "grade 4" in result.reason and "not defined by the value" in result.reason


@pytest.mark.parametrize("test", [LabTest.ALT, LabTest.AST])
@pytest.mark.parametrize(
    ("value", "grade"),
    [(40, 0), (41, 1), (120, 1), (121, 2), (200, 2), (201, 3), (800, 3), (801, 4)],
)
def test_transaminases_by_multiples_of_uln(test: LabTest, value: float, grade: int) -> None:
    assert only_grade(test, value, References(uln=40)) == grade


@pytest.mark.parametrize(
    ("value", "grade"),
    [(20, 0), (20.1, 1), (30, 1), (30.1, 2), (60, 2), (60.1, 3), (200, 3), (200.1, 4)],
)
def test_blood_bilirubin_increased(value: float, grade: int) -> None:
    assert only_grade(LabTest.TOTAL_BILIRUBIN, value, References(uln=20)) == grade


def test_bilirubin_in_mg_per_dl_grades_like_umol_per_l() -> None:
    uln = to_si(LabTest.TOTAL_BILIRUBIN, 1.2, "mg/dL")
    assert (
        only_grade(
            LabTest.TOTAL_BILIRUBIN,
            to_si(LabTest.TOTAL_BILIRUBIN, 3.6, "mg/dL"),
            References(uln=uln),
        )
        == 2
    )  # exactly 3.0 x ULN belongs to grade 2


@pytest.mark.parametrize(
    ("value", "baseline", "grade"),
    [
        (100, None, 0),
        (101, None, 1),
        (150, None, 1),
        (151, None, 2),
        (300, None, 2),
        (301, None, 3),
        (600, None, 3),
        (601, None, 4),
        (90, 60, 0),  # within the normal range: grade 0 whatever the baseline
        (101, 60, 2),  # above ULN (grade 1 by ULN), >1.5 x baseline: the worse is grade 2
        (181, 60, 3),  # >3 x baseline
        (101, 100, 1),
    ],
)
def test_creatinine_takes_the_worse_of_uln_and_baseline(
    value: float, baseline: float | None, grade: int
) -> None:
    assert only_grade(LabTest.CREATININE, value, References(uln=100, baseline=baseline)) == grade


def test_creatinine_without_baseline_says_it_graded_against_uln_only() -> None:
    (result,) = grade_si(LabTest.CREATININE, 120, References(uln=100))
    assert result.grade == 1
    assert "baseline not known" in result.reason


def test_missing_lln_leaves_grade_0_or_1_undecided() -> None:
    (result,) = grade_si(LabTest.ANC, 1.7, References())
    assert result.grade is None and result.minimum_grade == 0
    assert "LLN not given" in result.reason


def test_missing_lln_does_not_matter_below_the_absolute_thresholds() -> None:
    assert only_grade(LabTest.ANC, 0.9, References()) == 3


def test_missing_uln_cannot_grade_a_multiple_of_uln() -> None:
    (result,) = grade_si(LabTest.ALT, 500, References())
    assert result.grade is None
    assert "ULN not given" in result.reason


def test_creatinine_with_baseline_but_no_uln_is_undecided() -> None:
    # Baseline criteria count only beyond the normal range, which the missing ULN leaves unknown.
    (result,) = grade_si(LabTest.CREATININE, 200, References(baseline=60))
    assert result.grade is None and result.minimum_grade == 0
    assert "no reference range: ULN not given" in result.reason


def test_every_band_carries_its_criterion_text() -> None:
    for term in LAB_TERMS:
        assert term.bands and all(band.criterion for band in term.bands), term.term


def test_the_deciding_criterion_is_reported() -> None:
    (result,) = grade_si(LabTest.PLATELETS, 40, NORMAL_PLT)
    assert result.criterion == "<50,000 - 25,000/mm3; <50.0 - 25.0 x 10e9 /L"
    assert CTCAE_VERSION == "4.03"
