"""Boundaries of the NCT05173246 rules that test_rules_engine.py does not pin down: the delay and
the 7-day neutropenia reductions, the Calvert check, cisplatin's clearance hold, Hy's law, febrile
neutropenia (signal and reduction), recurrent grade-3 irAEs and the endocrine, nephritis,
neurological and skin irAE rules. Each rule exactly at its limit, just beyond, just short, and in
both unit systems where the limit is a quantity with a unit.

Hand arithmetic is in the comments. Cockcroft-Gault: (140 - age) x weight / (72 x SCr mg/dL),
x 0.85 for women; the code converts creatinine with a molar mass of 113.12 g/mol, so 1 mg/dL is
10 000 / 113.12 = 88.40 umol/L. Calvert: mg = AUC x (min(clearance, 125) + 25).

Strict xfails mark defects found here; each reason starts with DEFECT and says what is wrong.
"""

import itertools
from collections.abc import Iterable

import pytest

from services.ctcae_grader.domain import Assessment, step
from services.ctcae_grader.state import PatientState
from shared.events import (
    AdverseEventReported,
    DoseAdministered,
    DoseDecisionMade,
    Envelope,
    LabResultReported,
    SafetySignalDetected,
)
from shared.protocol import study_protocol
from tests.unit.factories import ae, dose, enrolment, lab

PROTOCOL = study_protocol("NCT05173246")
SUBJECT = "GZ01-005"
NAB_P, CIS, CARBO, TORI = "nab-paclitaxel", "cisplatin", "carboplatin", "toripalimab"

_message_ids = itertools.count(1)  # every event its own source message id


def _message_id() -> str:
    return f"more-{next(_message_ids)}"


def at(day: str, clock: str = "07:30") -> str:
    """A collection time in 2025, site local time (UTC+8): at("04-07") is 7 April, 07:30."""
    return f"2025-{day}T{clock}:00+08:00"


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def enrolled(platinum: str = "cisplatin", **overrides) -> Envelope:
    return enrolment(SUBJECT, platinum=platinum, source_message_id=_message_id(), **overrides)


def anc(
    value: float | str,
    when: str,
    cycle: int | None = 2,
    day: int | None = 1,
    unit: str = "10^9/L",
) -> LabResultReported:
    per_mm3 = unit == "/mm3"
    return lab(
        "ANC",
        value,
        unit,
        cycle=cycle,
        day=day,
        subject_id=SUBJECT,
        collected_at=when,
        reference_low=1800 if per_mm3 else 1.8,
        reference_high=6300 if per_mm3 else 6.3,
        source_message_id=_message_id(),
    )


def plt(value: float, when: str, cycle: int = 2, day: int = 1) -> LabResultReported:
    return lab(
        "PLT",
        value,
        "10^9/L",
        cycle=cycle,
        day=day,
        subject_id=SUBJECT,
        collected_at=when,
        reference_low=125,
        reference_high=350,
        source_message_id=_message_id(),
    )


def creatinine(value: float | str, unit: str = "mg/dL", when: str = at("03-03")):
    """A creatinine result without a visit (ULN 1.2 mg/dL = 106 umol/L)."""
    in_mg_dl = unit == "mg/dL"
    return lab(
        "CREAT",
        value,
        unit,
        cycle=None,
        subject_id=SUBJECT,
        collected_at=when,
        reference_low=0.5 if in_mg_dl else 44,
        reference_high=1.2 if in_mg_dl else 106,
        source_message_id=_message_id(),
    )


ULN = {"ALT": 40.0, "AST": 40.0, "ALP": 125.0, "BILI": 21.0}  # U/L, U/L, U/L, umol/L


def liver(test: str, value: float, unit: str | None = None, uln: float | None = None):
    unit = unit or ("umol/L" if test == "BILI" else "U/L")
    return lab(
        test,
        value,
        unit,
        cycle=None,
        subject_id=SUBJECT,
        reference_low=None,
        reference_high=uln or ULN[test],
        source_message_id=_message_id(),
    )


def adverse(
    term: str, grade: int, immune_related: bool = False, onset: str = "2025-04-10", **overrides
) -> AdverseEventReported:
    fields = {
        "subject_id": SUBJECT,
        "term": term,
        "grade": grade,
        "immune_related": immune_related,
        "serious": False,
        "onset_date": onset,
        "source_message_id": _message_id(),
    }
    return ae(**(fields | overrides))


def carboplatin_mg(mg: float, cycle: int = 1, on: str = "2025-03-03") -> DoseAdministered:
    return dose(
        CARBO, cycle, 1, on, SUBJECT, dose=mg, dose_unit="mg", source_message_id=_message_id()
    )


# ---------------------------------------------------------------------------------------------
# Running and reading the outputs
# ---------------------------------------------------------------------------------------------


def run(events: Iterable[Envelope]) -> tuple[PatientState, list[Assessment]]:
    """Each event through `step` with the shipped protocol, the state carried along."""
    state, outputs = None, []
    for event in events:
        state, assessment = step(PROTOCOL, state, event)
        outputs.append(assessment)
    assert state is not None
    return state, outputs


Action = tuple[str, str, int | None, int | None]


def summary(assessment: Assessment, *only: str) -> list[tuple[str, tuple[Action, ...]]]:
    """(rule id, ((drug, action, from level, to level), ...)) of each decision, of the rules whose
    id starts with one of `only` when given."""
    return [
        (
            e.payload.rule_id,
            tuple(
                (a.drug.value, a.action.value, a.from_level, a.to_level) for a in e.payload.actions
            ),
        )
        for e in assessment.assessments
        if isinstance(e, DoseDecisionMade) and (not only or e.payload.rule_id.startswith(only))
    ]


def signals(assessment: Assessment) -> list[str]:
    return [e.payload.signal for e in assessment.assessments if isinstance(e, SafetySignalDetected)]


def all_signals(assessments: Iterable[Assessment]) -> list[str]:
    return [signal for assessment in assessments for signal in signals(assessment)]


def hold(*drugs: str, level: int = 0) -> tuple[Action, ...]:
    return tuple((drug, "hold", level, level) for drug in drugs)


def resume(*drugs: str, level: int = 0) -> tuple[Action, ...]:
    return tuple((drug, "resume", level, level) for drug in drugs)


def reduce(*drugs: str, level: int = 0) -> tuple[Action, ...]:
    return tuple((drug, "reduce", level, level + 1) for drug in drugs)


TORI_HOLD = hold(TORI)
TORI_STOP = ((TORI, "discontinue", 0, None),)


# ---------------------------------------------------------------------------------------------
# D1-DELAY-REDUCE: D1-ANC-HOLD in force for more than 7 days
# ---------------------------------------------------------------------------------------------

DELAY_REDUCE = ("D1-DELAY-REDUCE", reduce(NAB_P, CARBO))
D1_ANC_HOLD = ("D1-ANC-HOLD", hold(NAB_P, CARBO))


@pytest.mark.parametrize(
    ("recheck_at", "reduced"),
    [
        (at("04-14"), False),  # in force exactly 7 days: not more than 7
        (at("04-14", "08:30"), True),  # 7 days and 1 hour
        (at("04-15"), True),  # 8 days
    ],
)
def test_delay_reduce_after_more_than_7_days_of_day1_neutrophil_hold(
    recheck_at: str, reduced: bool
) -> None:
    _, out = run([enrolled(CARBO), anc(0.9, at("04-07")), anc(1.2, recheck_at)])
    assert summary(out[1]) == [D1_ANC_HOLD]
    assert summary(out[2]) == ([DELAY_REDUCE] if reduced else [])


def test_delay_reduce_spares_cisplatin() -> None:
    # The rule names nab-paclitaxel and carboplatin; a cisplatin subject keeps full-dose cisplatin.
    _, out = run([enrolled(CIS), anc(0.9, at("04-07")), anc(1.2, at("04-15"))])
    assert summary(out[2]) == [("D1-DELAY-REDUCE", reduce(NAB_P))]


def test_a_hold_resolved_after_exactly_7_days_resumes_without_a_reduction() -> None:
    _, out = run([enrolled(CARBO), anc(0.9, at("04-07")), anc(1.5, at("04-14"))])
    assert summary(out[2]) == [("D1-ANC-HOLD", resume(NAB_P, CARBO))]


def test_a_day1_platelet_hold_does_not_count_as_a_neutrophil_delay() -> None:
    _, out = run([enrolled(CARBO), plt(90, at("04-07")), plt(95, at("04-16"))])
    assert summary(out[1]) == [("D1-PLT-HOLD", hold(NAB_P, CARBO))]
    assert summary(out[2]) == []


def test_delay_reduce_rearms_after_the_resume_and_a_second_delayed_cycle_reduces_again() -> None:
    _, out = run(
        [
            enrolled(CARBO),
            anc(0.9, at("04-07")),  # C2D1 held
            anc(1.8, at("04-15")),  # recovered after 8 days: reduce, then resume
            dose(NAB_P, 2, 1, "2025-04-15", SUBJECT),
            anc(0.9, at("05-06"), cycle=3),  # C3D1 held
            anc(1.0, at("05-14"), cycle=3),  # 8 days on: the second delay
            anc(1.9, at("05-15"), cycle=3),
        ]
    )
    assert summary(out[2]) == [DELAY_REDUCE, ("D1-ANC-HOLD", resume(NAB_P, CARBO, level=1))]
    assert summary(out[4]) == [("D1-ANC-HOLD", hold(NAB_P, CARBO, level=1))]
    assert summary(out[5]) == [("D1-DELAY-REDUCE", reduce(NAB_P, CARBO, level=1))]
    assert summary(out[6]) == [("D1-ANC-HOLD", resume(NAB_P, CARBO, level=2))]


def test_one_long_delay_is_one_reduction_even_across_a_toripalimab_dose() -> None:
    _, out = run(
        [
            enrolled(CARBO),
            dose(TORI, 2, 1, "2025-04-07", SUBJECT),
            anc(0.9, at("04-07")),  # C2 chemotherapy held
            anc(1.0, at("04-15")),  # 8 days: the delay reduction
            dose(TORI, 3, 1, "2025-04-28", SUBJECT),  # toripalimab is not held by this rule
            anc(1.1, at("04-29")),  # still held: the same delay
        ]
    )
    assert summary(out[3]) == [DELAY_REDUCE]
    assert [summary(o, "D1-DELAY") for o in out[4:]] == [[], []]


# ---------------------------------------------------------------------------------------------
# ANC-G4-7D-REDUCE: ANC below 0.5 x10^9/L, unbroken, for more than 7 days
# ---------------------------------------------------------------------------------------------

G4_REDUCE = ("ANC-G4-7D-REDUCE", reduce(NAB_P, CARBO))


def low_run(value: float, unit: str, first: str, last: str) -> list[Envelope]:
    """Two results mid-cycle (days 10 and 18: no day-1 or day-8 rule reads them)."""
    return [anc(value, first, day=10, unit=unit), anc(value, last, day=18, unit=unit)]


@pytest.mark.parametrize(
    ("value", "unit", "reduced"),
    [
        (0.5, "10^9/L", False),  # exactly 0.5 is not below 0.5
        (0.49, "10^9/L", True),
        (500, "/mm3", False),  # 500 /mm3 = 0.5 x10^9/L
        (499, "/mm3", True),
        (499, "cells/uL", True),
    ],
)
def test_anc_g4_limit_is_below_0_5_in_either_unit(value: float, unit: str, reduced: bool) -> None:
    _, out = run([enrolled(CARBO), *low_run(value, unit, at("04-10"), at("04-18"))])
    assert summary(out[2]) == ([G4_REDUCE] if reduced else [])


@pytest.mark.parametrize(
    ("last", "reduced"),
    [
        (at("04-17"), False),  # 7 days exactly: not more than 7
        (at("04-17", "08:30"), True),  # 7 days and 1 hour
        (at("04-18"), True),  # 8 days
    ],
)
def test_anc_g4_run_must_last_more_than_7_days(last: str, reduced: bool) -> None:
    _, out = run([enrolled(CARBO), *low_run(0.4, "10^9/L", at("04-10"), last)])
    assert summary(out[2]) == ([G4_REDUCE] if reduced else [])


def test_anc_g4_run_may_mix_units() -> None:
    _, out = run(
        [enrolled(CARBO), anc(0.4, at("04-10"), day=10), anc(450, at("04-18"), day=18, unit="/mm3")]
    )
    assert summary(out[2]) == [G4_REDUCE]


def test_anc_g4_spares_cisplatin() -> None:
    _, out = run([enrolled(CIS), *low_run(0.4, "10^9/L", at("04-10"), at("04-18"))])
    assert summary(out[2]) == [("ANC-G4-7D-REDUCE", reduce(NAB_P))]


def test_an_interrupting_result_restarts_the_7_days() -> None:
    _, out = run(
        [
            enrolled(CARBO),
            anc(0.4, at("04-10"), day=10),
            anc(0.5, at("04-14"), day=14),  # exactly 0.5: not below, the run is broken
            anc(0.4, at("04-19"), day=19),  # 9 days after the first low, 5 after the break
            anc(0.3, at("04-27"), day=27),  # 8 days after the new run began
        ]
    )
    assert [summary(o) for o in out[1:4]] == [[], [], []]
    assert summary(out[4]) == [G4_REDUCE]


def test_one_unbroken_low_run_is_one_reduction_even_into_the_next_cycle() -> None:
    _, out = run(
        [
            enrolled(CARBO),
            *low_run(0.4, "10^9/L", at("04-10"), at("04-18")),
            anc(0.35, at("04-28"), cycle=3, day=1),  # still below 0.5: the same run
        ]
    )
    assert summary(out[2]) == [G4_REDUCE]
    assert summary(out[3], "ANC-G4") == []


# ---------------------------------------------------------------------------------------------
# CARBO-CALVERT-CHECK: a carboplatin dose in mg more than 10% off AUC x (min(CrCl, 125) + 25)
# ---------------------------------------------------------------------------------------------

CALVERT = "carboplatin-dose-deviation"


def young_heavy_man(**overrides) -> Envelope:
    # (140 - 20) x 100 / (72 x 1.0) = 166.7 mL/min, capped at 125: 5 x (125 + 25) = 750 mg.
    fields = {
        "sex": "M",
        "age_years": 20,
        "weight_kg": 100,
        "enrolled_on": "2025-03-03",
        "baseline_creatinine": {"value": 1.0, "unit": "mg/dL"},
    }
    return enrolled(CARBO, **(fields | overrides))


@pytest.mark.parametrize(
    ("mg", "flagged"),
    [
        (750, False),  # the Calvert dose with the clearance capped at 125
        (825, False),  # 10.0% over: not more than 10%
        (825.1, True),
        (675, False),  # 10.0% under
        (674.9, True),
        (958, True),  # 5 x (166.7 + 25): the dose without the cap, 27.7% over
    ],
)
def test_calvert_check_at_10_percent_with_the_gfr_cap(mg: float, flagged: bool) -> None:
    _, out = run([young_heavy_man(), carboplatin_mg(mg)])
    assert signals(out[1]) == ([CALVERT] if flagged else [])
    assert summary(out[1]) == []  # a signal, not a dose decision


@pytest.mark.parametrize("unit", ["mg/dL", "umol/L"])
@pytest.mark.parametrize(("mg", "flagged"), [(595, False), (600, True), (490, False), (485, True)])
def test_calvert_check_uses_the_latest_creatinine_in_either_unit(
    unit: str, mg: float, flagged: bool
) -> None:
    # Latest creatinine 2.0 mg/dL = 176.8 umol/L: (140 - 20) x 100 / (72 x 2.0) = 83.3 mL/min,
    # 5 x (83.3 + 25) = 541.7 mg; +10% = 595.8, -10% = 487.5.
    # 600 is 10.8% over, 595 9.8% over, 490 9.5% under, 485 10.5% under.
    value = 2.0 if unit == "mg/dL" else 176.8
    _, out = run([young_heavy_man(), creatinine(value, unit), carboplatin_mg(mg)])
    assert signals(out[2]) == ([CALVERT] if flagged else [])


def test_a_dose_given_in_auc_is_not_checked() -> None:
    given = dose(CARBO, 1, 1, "2025-03-03", SUBJECT, dose=7, source_message_id=_message_id())
    assert given.payload.dose_unit == "AUC"
    _, out = run([young_heavy_man(), given])
    assert signals(out[1]) == []


def test_without_enrolment_the_clearance_is_unknown_and_the_dose_not_checked() -> None:
    _, out = run([carboplatin_mg(2000)])
    assert signals(out[0]) == []


@pytest.mark.parametrize(
    ("mg", "flagged"),
    [
        (600, False),  # AUC 4 x 150
        (660, False),  # 10.0% over
        (660.1, True),
        (750, True),  # the level-0 dose (AUC 5) is 25% over at level 1
    ],
)
def test_after_a_reduction_the_check_uses_auc_4(mg: float, flagged: bool) -> None:
    _, out = run(
        [
            young_heavy_man(),
            plt(40, at("03-17"), cycle=1, day=15),  # PLT-BELOW-50-REDUCE: carboplatin 0 -> 1
            plt(150, at("03-24"), cycle=2, day=1),  # recovered: the rule re-arms
            carboplatin_mg(mg, cycle=2, on="2025-03-24"),
        ]
    )
    assert ("PLT-BELOW-50-REDUCE", reduce(NAB_P, CARBO)) in summary(out[1])
    assert signals(out[3]) == ([CALVERT] if flagged else [])


# ---------------------------------------------------------------------------------------------
# CIS-CRCL-HOLD: Cockcroft-Gault below 50 mL/min holds cisplatin; resumed at >= 50
# ---------------------------------------------------------------------------------------------

CRCL_HOLD = ("CIS-CRCL-HOLD", hold(CIS))
CRCL_RESUME = ("CIS-CRCL-HOLD", resume(CIS))


def cisplatin_subject(sex: str = "M", baseline_mg_dl: float = 0.7) -> Envelope:
    # 68 years, 50 kg: (140 - 68) x 50 / 72 = 50 / SCr mg/dL (men), x 0.85 women.
    # Baseline 0.7 mg/dL: 71.4 mL/min (men), 60.7 (women): not held at enrolment.
    # Results are collected on the enrolment day, so the age is exactly 68.
    return enrolled(
        CIS,
        sex=sex,
        age_years=68,
        weight_kg=50,
        enrolled_on="2025-03-03",
        baseline_creatinine={"value": baseline_mg_dl, "unit": "mg/dL"},
    )


@pytest.mark.parametrize(
    ("sex", "mg_dl", "held"),
    [
        ("M", 1.0, False),  # 50 / 1.0 = 50.0 mL/min: not below 50
        ("M", 1.01, True),  # 49.5
        ("M", 0.99, False),  # 50.5
        ("F", 0.85, False),  # 50 / 0.85 x 0.85 = 50.0
        ("F", 0.86, True),  # 49.4
        ("F", 1.0, True),  # 42.5: the same creatinine that is exactly 50 for a man
    ],
)
def test_cisplatin_held_below_50_ml_min(sex: str, mg_dl: float, held: bool) -> None:
    _, out = run([cisplatin_subject(sex), creatinine(mg_dl)])
    assert summary(out[1], "CIS-") == ([CRCL_HOLD] if held else [])


@pytest.mark.parametrize(
    ("mg_dl", "umol_l", "held"),
    [
        (1.0, 10_000 / 113.12, False),  # 88.40 umol/L is 1.0 mg/dL: exactly 50 mL/min
        (1.01, 89.3, True),  # 89.3 umol/L = 1.0102 mg/dL: 49.5 mL/min
        (0.99, 87.5, False),  # 87.5 umol/L = 0.9898 mg/dL: 50.5 mL/min
        (1.2, 106, True),  # 41.7 mL/min
        (0.9, 80, False),  # 55.6 / 55.3 mL/min
    ],
)
def test_creatinine_in_umol_l_and_mg_dl_give_the_same_decision(
    mg_dl: float, umol_l: float, held: bool
) -> None:
    for value, unit in ((mg_dl, "mg/dL"), (umol_l, "umol/L")):
        _, out = run([cisplatin_subject(), creatinine(value, unit)])
        assert summary(out[1], "CIS-") == ([CRCL_HOLD] if held else []), unit


def test_cisplatin_resumes_at_50_ml_min_not_before() -> None:
    _, out = run(
        [
            cisplatin_subject(),
            creatinine(1.2),  # 41.7: held
            creatinine(1.01),  # 49.5: still held, nothing new
            creatinine(1.0),  # 50.0: resumed
        ]
    )
    assert [summary(o, "CIS-") for o in out[1:]] == [[CRCL_HOLD], [], [CRCL_RESUME]]


def test_clearance_from_the_baseline_until_a_creatinine_is_reported() -> None:
    # Baseline 1.2 mg/dL: 41.7 mL/min, held from the enrolment itself; 0.9 mg/dL: 55.6.
    _, out = run([cisplatin_subject(baseline_mg_dl=1.2), creatinine(0.9)])
    assert summary(out[0], "CIS-") == [CRCL_HOLD]
    assert summary(out[1], "CIS-") == [CRCL_RESUME]


def test_the_latest_creatinine_counts_not_the_worst() -> None:
    _, out = run(
        [
            cisplatin_subject(baseline_mg_dl=0.9),  # 55.6: given
            creatinine(1.3, when=at("03-03", "08:00")),  # 38.5: held
            creatinine(0.95, when=at("03-03", "09:00")),  # 52.6: resumed
        ]
    )
    assert [summary(o, "CIS-") for o in out] == [[], [CRCL_HOLD], [CRCL_RESUME]]


def test_a_carboplatin_subject_gets_no_cisplatin_decision() -> None:
    subject = enrolled(
        CARBO,
        sex="M",
        age_years=68,
        weight_kg=50,
        enrolled_on="2025-03-03",
        baseline_creatinine={"value": 0.7, "unit": "mg/dL"},
    )
    _, out = run([subject, creatinine(1.2)])
    assert summary(out[1], "CIS-") == []


def test_a_creatinine_above_the_measuring_range_keeps_cisplatin_held() -> None:
    _, out = run([cisplatin_subject(baseline_mg_dl=0.9), creatinine(1.5), creatinine(">4.0")])
    assert summary(out[1], "CIS-") == [CRCL_HOLD]  # 50 / 1.5 = 33.3 mL/min
    assert summary(out[2], "CIS-") == []  # still held


# ---------------------------------------------------------------------------------------------
# HYS-LAW: ALT or AST >= 3 x ULN, bilirubin > 2 x ULN, ALP < 2 x ULN
# ---------------------------------------------------------------------------------------------

# ULN: ALT and AST 40 U/L, ALP 125 U/L, bilirubin 21 umol/L.
HY = {"ALT": 3 * 40, "BILI": 2 * 21 + 0.1, "ALP": 2 * 125 - 0.1}  # a case at the very limits


@pytest.mark.parametrize(
    ("changed", "signal"),
    [
        ({}, True),  # ALT exactly 3 x ULN counts ("at least")
        ({"ALT": 3 * 40 - 0.1}, False),
        ({"BILI": 2 * 21}, False),  # exactly 2 x ULN is not above
        ({"BILI": 2 * 21 - 0.1}, False),
        ({"ALP": 2 * 125}, False),  # exactly 2 x ULN: not below (cholestasis)
        ({"ALP": 2 * 125 + 0.1}, False),
    ],
)
def test_hys_law_limits(changed: dict[str, float], signal: bool) -> None:
    values = HY | changed
    _, out = run([enrolled(), *(liver(test, value) for test, value in values.items())])
    assert all_signals(out) == (["hys-law"] if signal else [])


@pytest.mark.parametrize(("ast", "signal"), [(3 * 40, True), (3 * 40 - 0.1, False)])
def test_hys_law_by_ast_instead_of_alt(ast: float, signal: bool) -> None:
    _, out = run(
        [
            enrolled(),
            liver("ALT", 35),  # normal
            liver("AST", ast),
            liver("BILI", HY["BILI"]),
            liver("ALP", HY["ALP"]),
        ]
    )
    assert all_signals(out) == (["hys-law"] if signal else [])


@pytest.mark.parametrize(("bilirubin", "signal"), [(2.4, False), (2.41, True)])
def test_hys_law_bilirubin_in_mg_dl_against_its_uln_in_mg_dl(
    bilirubin: float, signal: bool
) -> None:
    # ULN 1.2 mg/dL: 2 x ULN = 2.4 mg/dL
    _, out = run(
        [
            enrolled(),
            liver("ALP", 100),
            liver("ALT", 150),
            liver("BILI", bilirubin, unit="mg/dL", uln=1.2),
        ]
    )
    assert signals(out[3]) == (["hys-law"] if signal else [])


# ---------------------------------------------------------------------------------------------
# FEBRILE-NEUTROPENIA-SIGNAL: ANC below 1.0 x10^9/L with fever reported
# ---------------------------------------------------------------------------------------------

FN_SIGNAL = "febrile-neutropenia"


@pytest.mark.parametrize(
    ("value", "unit", "signal"),
    [
        (1.0, "10^9/L", False),  # exactly 1.0 is not below
        (0.99, "10^9/L", True),
        (1000, "/mm3", False),
        (999, "/mm3", True),
    ],
)
def test_febrile_neutropenia_signal_anc_limit(value: float, unit: str, signal: bool) -> None:
    # Fever reported first: the signal comes with the low count.
    _, out = run([enrolled(), adverse("Fever", 1), anc(value, at("04-10"), day=10, unit=unit)])
    assert signals(out[2]) == ([FN_SIGNAL] if signal else [])


def test_fever_reported_after_the_low_count_also_signals() -> None:
    _, out = run([enrolled(), anc(0.8, at("04-10"), day=10), adverse("Fever", 1)])
    assert signals(out[1]) == []
    assert signals(out[2]) == [FN_SIGNAL]


def test_fever_without_a_low_count_is_no_signal() -> None:
    _, out = run([enrolled(), anc(2.5, at("04-10"), day=10), adverse("Fever", 2)])
    assert all_signals(out) == []


# ---------------------------------------------------------------------------------------------
# FN-REDUCE: a febrile neutropenia report (grade >= 3)
# ---------------------------------------------------------------------------------------------


def febrile_neutropenia(grade: int = 3, onset: str = "2025-04-10") -> AdverseEventReported:
    return adverse(
        "Febrile neutropenia",
        grade,
        onset=onset,
        serious=True,
        site_aware_at=f"{onset}T10:00:00+00:00",
    )


@pytest.mark.parametrize("grade", [3, 4])
@pytest.mark.parametrize(
    ("platinum", "reduced"), [(CARBO, reduce(NAB_P, CARBO)), (CIS, reduce(NAB_P))]
)
def test_febrile_neutropenia_reduces_nab_paclitaxel_and_only_carboplatin(
    grade: int, platinum: str, reduced: tuple[Action, ...]
) -> None:
    _, out = run([enrolled(platinum), febrile_neutropenia(grade)])
    assert summary(out[1]) == [("FN-REDUCE", reduced)]


def test_a_normal_count_after_febrile_neutropenia_is_no_second_reduction() -> None:
    _, out = run([enrolled(CARBO), febrile_neutropenia(), anc(2.0, at("04-15"), cycle=2, day=8)])
    assert summary(out[1]) == [("FN-REDUCE", reduce(NAB_P, CARBO))]
    assert summary(out[2]) == []


# ---------------------------------------------------------------------------------------------
# IRAE-RECURRENT-G3-DISCONTINUE: a second grade-3 immune-related report
# ---------------------------------------------------------------------------------------------

RECURRENT = ("IRAE-RECURRENT-G3-DISCONTINUE", TORI_STOP)


def test_two_grade_3_iraes_of_different_terms_discontinue_toripalimab() -> None:
    # Neither term has a rule of its own: only the recurrence rule acts.
    _, out = run(
        [
            enrolled(),
            adverse("Arthralgia", 3, True, onset="2025-04-10"),
            adverse("Pancreatitis", 3, True, onset="2025-05-20"),
        ]
    )
    assert summary(out[1]) == []
    assert summary(out[2]) == [RECURRENT]


def test_the_same_term_at_grade_3_again_after_improving_is_recurrent() -> None:
    _, out = run(
        [
            enrolled(),
            adverse("Arthralgia", 3, True, onset="2025-04-10"),
            adverse("Arthralgia", 1, True, onset="2025-04-10"),
            adverse("Arthralgia", 3, True, onset="2025-05-20"),
        ]
    )
    assert [summary(o) for o in out[1:]] == [[], [], [RECURRENT]]


def test_a_grade_4_irae_is_not_a_grade_3_recurrence_but_discontinues_as_grade_4() -> None:
    state, out = run(
        [
            enrolled(),
            adverse("Arthralgia", 3, True, onset="2025-04-10"),
            adverse("Uveitis", 4, True, onset="2025-05-20"),
        ]
    )
    assert summary(out[2]) == [("IRAE-ANY-G4-DISCONTINUE", TORI_STOP)]
    assert "IRAE-RECURRENT-G3-DISCONTINUE" not in state.active_rules


def test_grade_3_reports_the_site_did_not_flag_immune_related_do_not_count() -> None:
    _, out = run(
        [
            enrolled(),
            adverse("Arthralgia", 3, False, onset="2025-04-10"),
            adverse("Pancreatitis", 3, False, onset="2025-05-20"),
            adverse("Uveitis", 3, True, onset="2025-06-01"),  # the first immune-related one
        ]
    )
    assert [summary(o) for o in out[1:]] == [[], [], []]


def test_a_follow_up_of_the_same_grade_3_irae_is_not_a_recurrence() -> None:
    _, out = run(
        [
            enrolled(),
            adverse("Arthralgia", 3, True, onset="2025-04-10"),
            adverse("Arthralgia", 3, True, onset="2025-04-10", resolved_date="2025-04-24"),
        ]
    )
    assert summary(out[2]) == []


# ---------------------------------------------------------------------------------------------
# Immune-related withhold / discontinue rules by grade, flag and resume grade
# ---------------------------------------------------------------------------------------------

ENDOCRINE = ("IRAE-ENDOCRINE-WITHHOLD", TORI_HOLD)
NEPHRITIS = ("IRAE-NEPHRITIS-AE-WITHHOLD", TORI_HOLD)
NEURO_HOLD = ("IRAE-NEURO-WITHHOLD", TORI_HOLD)
NEURO_STOP = ("IRAE-NEURO-DISCONTINUE", TORI_STOP)
SKIN = ("IRAE-SKIN-WITHHOLD", TORI_HOLD)
ANY_G4 = ("IRAE-ANY-G4-DISCONTINUE", TORI_STOP)


@pytest.mark.parametrize(
    ("term", "grade", "immune_related", "expected"),
    [
        # endocrine: grade >= 3, flagged immune-related (grade 4 is taken by IRAE-ANY-G4 first)
        ("Hypothyroidism", 2, True, []),
        ("Hypothyroidism", 3, True, [ENDOCRINE]),
        ("Hypothyroidism", 3, False, []),
        ("Hyperthyroidism", 3, True, [ENDOCRINE]),
        ("Adrenal insufficiency", 3, True, [ENDOCRINE]),
        ("Hyperglycemia", 3, True, [ENDOCRINE]),
        ("Hyperglycemia", 3, False, []),  # e.g. steroid-induced
        ("Endocrine disorders - Other, specify", 3, True, [ENDOCRINE]),
        ("Adrenal insufficiency", 4, True, [ANY_G4]),
        # nephritis reported by the site: grade 2 - 3, flagged
        ("Acute kidney injury", 1, True, []),
        ("Acute kidney injury", 2, True, [NEPHRITIS]),
        ("Acute kidney injury", 3, True, [NEPHRITIS]),
        ("Acute kidney injury", 3, False, []),
        ("Acute kidney injury", 4, True, [ANY_G4]),
        ("Creatinine increased", 2, True, [NEPHRITIS]),
        ("Creatinine increased", 2, False, []),
        # neurological: grade 2 withholds, grade >= 3 discontinues, flagged
        ("Peripheral motor neuropathy", 1, True, []),
        ("Peripheral motor neuropathy", 2, True, [NEURO_HOLD]),
        ("Peripheral motor neuropathy", 2, False, []),
        ("Peripheral motor neuropathy", 3, True, [NEURO_STOP]),
        ("Peripheral motor neuropathy", 3, False, []),
        ("Encephalopathy", 2, True, [NEURO_HOLD]),
        ("Myelitis", 3, True, [NEURO_STOP]),
        ("Nervous system disorders - Other, specify", 2, True, [NEURO_HOLD]),
        ("Encephalopathy", 4, True, [ANY_G4]),
        # skin: grade 3 only, flagged
        ("Rash maculo-papular", 2, True, []),
        ("Rash maculo-papular", 3, True, [SKIN]),
        ("Rash maculo-papular", 3, False, []),
        ("Pruritus", 3, True, [SKIN]),
        ("Bullous dermatitis", 3, True, [SKIN]),
        ("Erythema multiforme", 3, True, [SKIN]),
        ("Bullous dermatitis", 4, True, [ANY_G4]),
    ],
)
def test_irae_rules_at_their_grade_limits(
    term: str, grade: int, immune_related: bool, expected: list
) -> None:
    _, out = run([enrolled(), adverse(term, grade, immune_related)])
    assert summary(out[1]) == expected


@pytest.mark.parametrize(
    ("term", "rule", "grades", "resumed_at"),
    [
        # Endocrine resumes when clinically stable, grade <= 2 (there is no grade between 2 and the
        # grade-3 hold, and a second grade-3 report would be a recurrence: see below).
        ("Hypothyroidism", "IRAE-ENDOCRINE-WITHHOLD", (3,), 2),
        ("Acute kidney injury", "IRAE-NEPHRITIS-AE-WITHHOLD", (3, 2), 1),
        ("Acute kidney injury", "IRAE-NEPHRITIS-AE-WITHHOLD", (2,), 1),
        ("Peripheral motor neuropathy", "IRAE-NEURO-WITHHOLD", (2,), 1),
        ("Rash maculo-papular", "IRAE-SKIN-WITHHOLD", (3, 2), 1),
    ],
)
def test_irae_withholds_resume_at_the_grade_the_file_gives(
    term: str, rule: str, grades: tuple[int, ...], resumed_at: int
) -> None:
    """The first grade holds, the later ones (not yet back to the resume grade) change nothing."""
    _, out = run(
        [
            enrolled(),
            *(adverse(term, grade, True) for grade in grades),
            adverse(term, resumed_at, True),
        ]
    )
    assert summary(out[1]) == [(rule, TORI_HOLD)]
    assert [summary(o) for o in out[2:-1]] == [[] for _ in grades[1:]]
    assert summary(out[-1]) == [(rule, resume(TORI))]


def test_endocrine_resume_needs_every_listed_endocrinopathy_at_grade_2_or_less() -> None:
    # The resume condition has no immune-related flag: a grade-3 hyperglycaemia the site did not
    # attribute to toripalimab (steroid-induced, say) means the subject is not yet stable.
    _, out = run(
        [
            enrolled(),
            adverse("Hypothyroidism", 3, True),
            adverse("Hyperglycemia", 3, False),
            adverse("Hypothyroidism", 2, True),  # hyperglycaemia still grade 3
            adverse("Hyperglycemia", 2, False),
        ]
    )
    assert [summary(o) for o in out[1:]] == [
        [ENDOCRINE],
        [],
        [],
        [("IRAE-ENDOCRINE-WITHHOLD", resume(TORI))],
    ]


def test_a_neurological_hold_escalated_to_grade_3_discontinues() -> None:
    state, out = run(
        [
            enrolled(),
            adverse("Peripheral motor neuropathy", 2, True),
            adverse("Peripheral motor neuropathy", 3, True),
            adverse("Peripheral motor neuropathy", 1, True),  # never resumed once discontinued
        ]
    )
    assert [summary(o) for o in out[1:]] == [[NEURO_HOLD], [NEURO_STOP], []]
    assert state.holds == {}
