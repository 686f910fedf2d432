"""Properties of CTCAE lab grading that hold for every term, value and set of references.

The thresholds themselves are specified in test_ctcae_terms.py; here hypothesis checks the
rules around them: grades never improve as a value worsens, a result grades the same in either
unit column away from thresholds, the normal range is grade 0, a grade is left undecided only
for a missing reference, a bounded result ("<0.1") is decided only when every value it allows
has that grade, and every grade has a reason.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ctcae import (
    LAB_TERMS,
    Anchor,
    Direction,
    References,
    TermCriteria,
    TermGrade,
    grade_lab,
    grade_reported,
)
from shared.labs import LAB_DEFINITIONS, LabTest, convert, to_si

FAST = settings(max_examples=200, deadline=None)
T = LabTest

# Typical SI reference range and a plausible span of results per test (hand-written).
TYPICAL: dict[LabTest, tuple[float, float, float, float]] = {
    T.WBC: (3.5, 9.5, 0.0, 150.0),
    T.ANC: (1.8, 6.3, 0.0, 20.0),
    T.LYMPHOCYTES: (1.1, 3.2, 0.0, 30.0),
    T.CD4: (0.6, 1.6, 0.0, 3.0),
    T.PLATELETS: (125, 350, 0.0, 1000.0),
    T.HEMOGLOBIN: (130, 175, 20.0, 280.0),
    T.INR: (0.8, 1.2, 0.5, 8.0),
    T.APTT: (25, 35, 10.0, 200.0),
    T.FIBRINOGEN: (2.0, 4.0, 0.0, 10.0),
    T.HAPTOGLOBIN: (0.3, 2.0, 0.0, 4.0),
    T.ALT: (7, 40, 0.0, 1200.0),
    T.AST: (13, 35, 0.0, 1200.0),
    T.ALKALINE_PHOSPHATASE: (45, 125, 0.0, 3000.0),
    T.GGT: (10, 60, 0.0, 1500.0),
    T.TOTAL_BILIRUBIN: (3.4, 21, 0.0, 300.0),
    T.CREATININE: (57, 111, 20.0, 900.0),
    T.CREATINE_KINASE: (50, 310, 0.0, 4000.0),
    T.AMYLASE: (35, 135, 0.0, 800.0),
    T.LIPASE: (13, 60, 0.0, 400.0),
    T.CHOLESTEROL: (2.8, 5.2, 0.0, 16.0),
    T.TRIGLYCERIDES: (0.4, 1.7, 0.0, 15.0),
    T.GLUCOSE: (3.9, 6.1, 0.0, 40.0),
    T.POTASSIUM: (3.5, 5.3, 1.0, 9.0),
    T.SODIUM: (135, 145, 100.0, 180.0),
    T.CALCIUM: (2.15, 2.55, 0.8, 4.5),
    T.IONIZED_CALCIUM: (1.12, 1.32, 0.4, 2.4),
    T.MAGNESIUM: (0.66, 1.05, 0.0, 4.5),
    T.PHOSPHATE: (0.87, 1.45, 0.0, 3.0),
    T.URATE: (0.2, 0.42, 0.0, 1.2),
    T.ALBUMIN: (35, 50, 5.0, 60.0),
}
GRADED_TESTS = sorted({term.test for term in LAB_TERMS})
TWO_UNIT_TESTS = [
    t for t in GRADED_TESTS if LAB_DEFINITIONS[t].si_unit != LAB_DEFINITIONS[t].conventional_unit
]


def sig(x: float, digits: int = 4) -> float:
    """A number as a lab would print it."""
    return float(f"{x:.{digits}g}")


def result_for(term: TermCriteria, value: float, unit: str, refs: References) -> TermGrade:
    (result,) = [r for r in grade_lab(term.test, value, unit, refs) if r.term == term.term]
    return result


@st.composite
def si_references(draw: st.DrawFn, test: LabTest, complete: bool = False) -> References:
    lln, uln, low, high = TYPICAL[test]
    maybe = (lambda x: st.just(x)) if complete else (lambda x: st.sampled_from([x, None]))
    baseline = st.floats(max(low, 0.01), high).map(lambda x: sig(x, 3))
    return References(
        lln=draw(maybe(lln)),
        uln=draw(maybe(uln)),
        baseline=draw(baseline if complete else st.one_of(st.none(), baseline)),
        fasting=draw(st.booleans() if complete else st.sampled_from([True, False, None])),
    )


@st.composite
def term_cases(draw: st.DrawFn, complete: bool = False):
    """A term, references (SI) and a value (SI) inside the test's plausible span."""
    term = draw(st.sampled_from(LAB_TERMS))
    _, _, low, high = TYPICAL[term.test]
    refs = draw(si_references(term.test, complete))
    value = draw(st.floats(low, high, allow_nan=False))
    return term, refs, value


# ---------------------------------------------------------------------------------------------
# Monotonicity
# ---------------------------------------------------------------------------------------------


@FAST
@given(term_cases(), st.floats(0, 1))
def test_a_value_moving_in_the_terms_direction_never_lowers_the_grade(case, fraction) -> None:
    term, refs, value = case
    _, _, low, high = TYPICAL[term.test]
    other = low + (high - low) * fraction
    milder, worse = sorted((value, other))
    if term.direction is Direction.LOW:
        milder, worse = worse, milder
    unit = LAB_DEFINITIONS[term.test].si_unit
    a, b = result_for(term, milder, unit, refs), result_for(term, worse, unit, refs)
    assert b.minimum_grade >= a.minimum_grade, (a.reason, b.reason)
    if a.grade is not None and b.grade is not None:
        assert b.grade >= a.grade, (a.reason, b.reason)


# ---------------------------------------------------------------------------------------------
# Unit invariance
# ---------------------------------------------------------------------------------------------


def _threshold_spans(term: TermCriteria, refs: References) -> list[tuple[float, float]]:
    """Where a grade can change, in SI: each absolute band's SI number and its conventional
    number converted to SI (CTCAE rounded the two separately), each relative threshold, and
    the references themselves."""
    definition = LAB_DEFINITIONS[term.test]
    spans = [(r, r) for r in (refs.lln, refs.uln, refs.baseline) if r is not None]
    anchors = {Anchor.LLN: refs.lln, Anchor.ULN: refs.uln, Anchor.BASELINE: refs.baseline}
    for band in term.bands:
        if band.anchor is Anchor.ABSOLUTE:
            other = to_si(term.test, band.conventional, definition.conventional_unit)
            spans.append((min(band.si, other), max(band.si, other)))
        elif band.anchor is Anchor.ABOVE_REFERENCE and refs.uln is not None:
            base = refs.uln
            if refs.baseline is not None and refs.baseline > refs.uln:
                base = refs.baseline
            spans.append((base + band.si, base + band.si))
        elif anchors.get(band.anchor) is not None:
            at = band.si * anchors[band.anchor]
            spans.append((at, at))
    return spans


def _near(value: float, spans: list[tuple[float, float]], margin: float = 1e-6) -> bool:
    return any(lo * (1 - margin) - 1e-12 <= value <= hi * (1 + margin) + 1e-12 for lo, hi in spans)


def _to_conventional(test: LabTest, refs: References) -> References:
    d = LAB_DEFINITIONS[test]

    def f(x: float | None) -> float | None:
        return None if x is None else convert(test, x, d.si_unit, d.conventional_unit)

    return References(f(refs.lln), f(refs.uln), f(refs.baseline), refs.fasting)


@FAST
@given(st.data())
def test_a_value_grades_the_same_in_si_and_conventional_units_away_from_thresholds(
    data: st.DataObject,
) -> None:
    term = data.draw(st.sampled_from([t for t in LAB_TERMS if t.test in TWO_UNIT_TESTS]))
    d = LAB_DEFINITIONS[term.test]
    _, _, low, high = TYPICAL[term.test]
    refs = data.draw(si_references(term.test))
    value = data.draw(st.floats(low, high, allow_nan=False))
    if _near(value, _threshold_spans(term, refs)):
        return  # CTCAE's two columns disagree here by design
    in_si = result_for(term, value, d.si_unit, refs)
    value_conv = convert(term.test, value, d.si_unit, d.conventional_unit)
    in_conv = result_for(term, value_conv, d.conventional_unit, _to_conventional(term.test, refs))
    assert (in_si.grade, in_si.minimum_grade) == (in_conv.grade, in_conv.minimum_grade), (
        in_si.reason,
        in_conv.reason,
    )


def test_the_two_printed_columns_of_every_absolute_threshold_are_the_same_quantity() -> None:
    # The exclusion zones above come from LAB_TERMS; this keeps them narrow: CTCAE's separate
    # rounding moves a threshold by at most 8% (0.9 mg/dL Mg = 0.37 mmol/L, printed 0.4).
    for term in LAB_TERMS:
        d = LAB_DEFINITIONS[term.test]
        for band in term.bands:
            if band.anchor is Anchor.ABSOLUTE:
                other = to_si(term.test, band.conventional, d.conventional_unit)
                assert abs(other - band.si) <= 0.09 * band.si, (term.term, band.criterion)


@pytest.mark.parametrize(
    ("term_name", "test", "si_value", "refs", "si_grade", "conventional_grade"),
    [
        # The columns' own rounding: each is right against its printed number.
        # <0.4 mmol/L is G3; 0.39 mmol/L = 0.95 mg/dL is in "<1.2 - 0.9 mg/dL" (G2)
        ("Hypomagnesemia", T.MAGNESIUM, 0.39, References(0.66, 1.05), 3, 2),
        # below the printed 1.71 mmol/L; 1.70 mmol/L = 150.6 mg/dL is in "150 - 300 mg/dL"
        ("Hypertriglyceridemia", T.TRIGLYCERIDES, 1.70, References(uln=1.5), 0, 1),
        # "<0.8 - 0.6 mmol/L" (G2); 0.62 mmol/L = 1.92 mg/dL is in "<2.0 - 1.0 mg/dL" (G3)
        ("Hypophosphatemia", T.PHOSPHATE, 0.62, References(0.87, 1.45), 2, 3),
    ],
)
def test_near_a_threshold_each_column_is_graded_against_its_own_printed_number(
    term_name: str,
    test: LabTest,
    si_value: float,
    refs: References,
    si_grade: int,
    conventional_grade: int,
) -> None:
    d = LAB_DEFINITIONS[test]
    term = next(t for t in LAB_TERMS if t.test is test and t.term == term_name)
    in_si = result_for(term, si_value, d.si_unit, refs)
    conv = convert(test, si_value, d.si_unit, d.conventional_unit)
    in_conv = result_for(term, conv, d.conventional_unit, _to_conventional(test, refs))
    assert (in_si.grade, in_conv.grade) == (si_grade, conventional_grade)


# ---------------------------------------------------------------------------------------------
# The normal range; undecided grades
# ---------------------------------------------------------------------------------------------


@FAST
@given(st.data())
def test_a_value_inside_the_normal_range_is_grade_0_for_every_term_of_its_test(
    data: st.DataObject,
) -> None:
    test = data.draw(st.sampled_from(GRADED_TESTS))
    lln, uln, _, _ = TYPICAL[test]
    value = data.draw(st.floats(lln, uln))
    refs = data.draw(si_references(test, complete=True))
    for result in grade_lab(test, value, LAB_DEFINITIONS[test].si_unit, refs):
        assert (result.grade, result.minimum_grade) == (0, 0), result.reason


MISSING_NAMES = {"LLN": "lln", "ULN": "uln", "baseline": "baseline", "fasting status": "fasting"}


@FAST
@given(term_cases())
def test_a_grade_is_undecided_only_when_a_reference_is_missing(case) -> None:
    term, refs, value = case
    result = result_for(term, value, LAB_DEFINITIONS[term.test].si_unit, refs)
    if result.grade is None:
        assert result.missing, result.reason
        assert set(result.missing) <= set(MISSING_NAMES)
        assert any(getattr(refs, field) is None for field in MISSING_NAMES.values())
        assert 0 <= result.minimum_grade <= 4
    else:
        assert result.minimum_grade == result.grade
        assert not result.missing


@FAST
@given(term_cases(complete=True))
def test_with_every_reference_given_the_grade_is_always_decided(case) -> None:
    term, refs, value = case
    result = result_for(term, value, LAB_DEFINITIONS[term.test].si_unit, refs)
    assert result.grade is not None, result.reason


# ---------------------------------------------------------------------------------------------
# Bounded results
# ---------------------------------------------------------------------------------------------


@st.composite
def bounded_cases(draw: st.DrawFn):
    test = draw(st.sampled_from(GRADED_TESTS))
    d = LAB_DEFINITIONS[test]
    unit = draw(st.sampled_from(sorted({d.si_unit, d.conventional_unit})))
    refs_si = draw(si_references(test))
    refs = refs_si if unit == d.si_unit else _to_conventional(test, refs_si)
    refs = References(
        *(None if r is None else sig(r) for r in (refs.lln, refs.uln, refs.baseline)),
        refs.fasting,
    )
    _, _, low, high = TYPICAL[test]
    bound = sig(convert(test, draw(st.floats(max(low, 0.01), high)), d.si_unit, unit))
    return test, unit, refs, bound


BELOW = (1e-7, 1e-4, 0.01, 0.1, 0.5, 0.9, 1.0)  # value = bound x (1 - f)
ABOVE = (1e-7, 1e-4, 0.01, 0.1, 1.0, 10.0)  # value = bound x (1 + f)


@FAST
@given(bounded_cases(), st.floats(0, 1))
def test_a_result_reported_below_a_bound_is_decided_only_if_every_lower_value_agrees(
    case, extra: float
) -> None:
    test, unit, refs, bound = case
    for reported in grade_reported(test, bound, unit, "<", refs):
        if reported.grade is None:
            assert "not given" in reported.reason
            continue
        for f in (*BELOW, extra):
            value = bound * (1 - f) if f < 1 else 0.0
            if value >= bound:
                continue
            (exact,) = [r for r in grade_lab(test, value, unit, refs) if r.term == reported.term]
            assert exact.grade == reported.grade, (bound, value, reported.reason, exact.reason)


@FAST
@given(bounded_cases(), st.floats(0, 100))
def test_a_result_reported_above_a_bound_is_decided_only_if_every_higher_value_agrees(
    case, extra: float
) -> None:
    test, unit, refs, bound = case
    for reported in grade_reported(test, bound, unit, ">", refs):
        if reported.grade is None:
            assert "not given" in reported.reason
            continue
        for f in (*ABOVE, extra):
            value = bound * (1 + f)
            if value <= bound:
                continue
            (exact,) = [r for r in grade_lab(test, value, unit, refs) if r.term == reported.term]
            assert exact.grade == reported.grade, (bound, value, reported.reason, exact.reason)


@FAST
@given(bounded_cases())
def test_an_undecided_bound_proves_no_more_than_its_mildest_possible_value(case) -> None:
    test, unit, refs, bound = case
    for comparator, values in (("<", (bound * (1 - 1e-4), 0.0)), (">", (bound * 1.0001,))):
        for reported in grade_reported(test, bound, unit, comparator, refs):
            for value in values:
                (exact,) = [
                    r for r in grade_lab(test, value, unit, refs) if r.term == reported.term
                ]
                assert reported.minimum_grade <= exact.minimum_grade, (reported.reason, value)


@pytest.mark.xfail(
    strict=True,
    reason="DEFECT: grade_bounded checks only bound - 1e-6 x bound, so a bound within 1e-6 above "
    "a threshold is decided as the worse grade although values between are the milder one",
)
def test_a_bound_just_above_a_threshold_is_not_decided_as_the_worse_grade() -> None:
    refs = References(lln=1.8, uln=6.3)
    (reported,) = grade_reported(T.ANC, 0.5000001, "10*9/L", "<", refs)
    (between,) = grade_lab(T.ANC, 0.50000005, "10*9/L", refs)  # < 0.5000001, and >= 0.5: G3
    assert between.grade == 3
    assert reported.grade != 4


# ---------------------------------------------------------------------------------------------
# Reasons
# ---------------------------------------------------------------------------------------------


def _check_reason(result: TermGrade) -> None:
    assert result.reason.strip()
    if result.grade is None:
        assert "not given" in result.reason
        if result.minimum_grade:
            assert f"at least grade {result.minimum_grade}" in result.reason
    elif result.grade == 0:
        assert "within the normal limit" in result.reason or "grade 0" in result.reason
    else:
        assert f"grade {result.grade}" in result.reason


@FAST
@given(term_cases())
def test_every_result_has_a_reason_naming_its_grade_or_what_was_not_given(case) -> None:
    term, refs, value = case
    _check_reason(result_for(term, value, LAB_DEFINITIONS[term.test].si_unit, refs))


@FAST
@given(bounded_cases(), st.sampled_from(["<", "<=", ">", ">="]))
def test_every_bounded_result_has_a_reason_naming_its_grade_or_what_was_not_given(
    case, comparator: str
) -> None:
    test, unit, refs, bound = case
    for reported in grade_reported(test, bound, unit, comparator, refs):
        _check_reason(reported)
        assert f"reported as {comparator}{bound:g}" in reported.reason
