"""The grader's pure core: grades, the two day-1 hold rules, and the alerts they raise."""

from datetime import timedelta

import pytest

from services.ctcae_grader.domain import assess
from shared.events import AlertRaised, DoseAction, DoseDecisionMade, Drug, LabGraded, Severity
from tests.unit.factories import ae, lab


def decisions(event) -> list[DoseDecisionMade]:
    return [e for e in assess(event).assessments if isinstance(e, DoseDecisionMade)]


def grades(event) -> list[LabGraded]:
    return [e for e in assess(event).assessments if isinstance(e, LabGraded)]


def test_every_lab_result_is_graded_once() -> None:
    (graded,) = grades(lab("ANC", 0.9))
    assert graded.payload.term == "Neutrophil count decreased"
    assert graded.payload.grade == 3
    assert graded.payload.visit.label == "C2D1"


@pytest.mark.parametrize(("anc", "held"), [(1.49, True), (0.9, True), (1.5, False), (2.0, False)])
def test_day1_anc_below_1_5_holds_chemotherapy(anc: float, held: bool) -> None:
    found = decisions(lab("ANC", anc, day=1))
    assert bool(found) is held
    if held:
        (decision,) = found
        assert decision.payload.rule_id == "D1-ANC-HOLD"
        assert {(a.drug, a.action) for a in decision.payload.actions} == {
            (Drug.NAB_PACLITAXEL, DoseAction.HOLD),
            (Drug.CISPLATIN, DoseAction.HOLD),
            (Drug.CARBOPLATIN, DoseAction.HOLD),
        }
        assert "RT-1" in decision.payload.source


def test_day1_anc_sent_per_mm3_holds_at_the_same_threshold() -> None:
    assert decisions(lab("ANC", 1499, "/mm3", reference_low=1800, reference_high=6300))
    assert not decisions(lab("ANC", 1500, "/mm3", reference_low=1800, reference_high=6300))


@pytest.mark.parametrize(("plt", "held"), [(99.9, True), (68, True), (100, False)])
def test_day1_platelets_below_100_hold_chemotherapy(plt: float, held: bool) -> None:
    found = decisions(lab("PLT", plt, day=1))
    assert bool(found) is held
    if held:
        assert found[0].payload.rule_id == "D1-PLT-HOLD"


def test_day8_and_unlabelled_samples_do_not_trigger_the_day1_rule() -> None:
    assert "D1-ANC-HOLD" not in [d.payload.rule_id for d in decisions(lab("ANC", 0.9, day=8))]
    assert not decisions(lab("ANC", 0.9, cycle=None))


def test_a_hold_raises_one_high_alert_naming_the_grade() -> None:
    (alert,) = assess(lab("ANC", 0.9)).alerts
    assert alert.payload.rule_id == "D1-ANC-HOLD"
    assert alert.payload.severity is Severity.HIGH
    assert "ANC 0.9 x10^9/L - hold nab-paclitaxel" in alert.payload.title
    assert "Neutrophil count decreased grade 3" in alert.payload.detail


def test_a_grade_4_count_on_day1_makes_the_hold_critical() -> None:
    (alert,) = assess(lab("ANC", 0.4)).alerts
    assert alert.payload.severity is Severity.CRITICAL


def test_a_grade_3_lab_without_a_protocol_rule_still_alerts() -> None:
    (alert,) = assess(lab("HGB", 75, "g/L", reference_low=130, reference_high=175)).alerts
    assert alert.payload.rule_id == "LAB-GRADE3"
    assert alert.payload.severity is Severity.HIGH


def test_grade_2_without_a_rule_raises_nothing() -> None:
    assert assess(lab("HGB", 90, "g/L", reference_low=130, reference_high=175)).alerts == []


def test_redelivery_gives_the_same_ids() -> None:
    first, again = assess(lab("ANC", 0.9)), assess(lab("ANC", 0.9))
    assert [e.event_id for e in first.assessments] == [e.event_id for e in again.assessments]
    assert first.alerts[0].payload.alert_id == again.alerts[0].payload.alert_id


def test_an_sae_alert_carries_the_24_hour_clock_from_site_awareness() -> None:
    event = ae()
    alert, *protocol_alerts = assess(event).alerts  # the reporting alert comes first
    assert isinstance(alert, AlertRaised)
    assert alert.payload.rule_id == "AE-SAE" and alert.payload.severity is Severity.CRITICAL
    assert [a.payload.rule_id for a in protocol_alerts] == ["FN-REDUCE"]
    assert alert.payload.due_at == event.payload.site_aware_at + timedelta(hours=24)


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"grade": 5, "serious": True}, "AE-DEATH"),
        (
            {"term": "Hypothyroidism", "grade": 2, "serious": False, "immune_related": True},
            "AE-IRAE",
        ),
        (
            {"term": "Pneumonitis", "grade": 2, "serious": False, "immune_related": True},
            "IRAE-PNEUMONITIS-WITHHOLD",
        ),
        ({"term": "Diarrhea", "grade": 3, "serious": False}, "AE-GRADE3PLUS"),
    ],
)
def test_adverse_events_that_need_the_desk(overrides: dict, rule: str) -> None:
    alert, *_ = assess(ae(**overrides)).alerts
    assert alert.payload.rule_id == rule


def test_a_mild_non_serious_adverse_event_raises_nothing() -> None:
    assert assess(ae(term="Nausea", grade=1, serious=False)).alerts == []


def test_a_recognised_irae_term_not_flagged_by_the_site_asks_for_review() -> None:
    (alert,) = assess(ae(term="Colitis", grade=2, serious=False, immune_related=False)).alerts
    assert alert.payload.rule_id == "AE-POSSIBLE-IRAE"
    assert alert.payload.severity is Severity.MEDIUM
    assert "colitis" in alert.payload.title.lower()


def test_a_grade_1_recognised_irae_term_raises_nothing() -> None:
    assert assess(ae(term="Colitis", grade=1, serious=False)).alerts == []


@pytest.mark.parametrize(
    ("reported", "held"),
    [("<1.5", True), ("<0.5", True), ("<=1.49", True), ("<1.6", False), (">0.5", False)],
)
def test_a_bound_holds_only_when_every_value_it_stands_for_is_below_the_minimum(
    reported: str, held: bool
) -> None:
    found = [d.payload.rule_id for d in decisions(lab("ANC", reported, day=1))]
    assert ("D1-ANC-HOLD" in found) is held


def test_an_age_in_the_last_year_of_a_band_still_gets_that_bands_range() -> None:
    from shared.labs import LabTest
    from shared.reference_ranges import load_reference_ranges

    configured = load_reference_ranges().lookup(LabTest.CREATININE, "GZ01", "F", 59.5)
    assert configured is not None and configured.uln == 73


def run(events: list) -> list:
    """Every output of the events, in order, through the shipped protocol with state carried."""
    from services.ctcae_grader.domain import step
    from shared.protocol import study_protocol

    protocol, state, outputs = study_protocol("NCT05173246"), None, []
    for event in events:
        state, assessment = step(protocol, state, event)
        outputs += [*assessment.assessments, *assessment.alerts]
    return outputs


def test_a_potential_hys_law_case_is_a_critical_signal() -> None:
    from shared.events import SafetySignalDetected
    from tests.unit.factories import enrolment

    outputs = run(
        [
            enrolment(),
            lab("ALP", 100, "U/L", reference_high=125, cycle=None, source_message_id="alp"),
            lab("BILI", 45, "umol/L", reference_high=21, cycle=None, source_message_id="bili"),
            lab("ALT", 150, "U/L", reference_high=50, cycle=None, source_message_id="alt"),  # 3 x
        ]
    )
    (signal,) = [o for o in outputs if isinstance(o, SafetySignalDetected)]
    assert signal.payload.signal == "hys-law"
    assert len(signal.payload.trigger_event_ids) == 3  # ALT, bilirubin and ALP results
    (alert,) = [o for o in outputs if isinstance(o, AlertRaised) and o.payload.rule_id == "HYS-LAW"]
    assert alert.payload.severity is Severity.CRITICAL


def test_cholestasis_is_not_hys_law() -> None:
    from shared.events import SafetySignalDetected
    from tests.unit.factories import enrolment

    outputs = run(
        [
            enrolment(),
            lab("ALP", 250, "U/L", reference_high=125, cycle=None, source_message_id="alp"),  # 2 x
            lab("BILI", 45, "umol/L", reference_high=21, cycle=None, source_message_id="bili"),
            lab("ALT", 200, "U/L", reference_high=50, cycle=None, source_message_id="alt"),
        ]
    )
    assert not [o for o in outputs if isinstance(o, SafetySignalDetected)]


def test_low_neutrophils_with_fever_signal_febrile_neutropenia() -> None:
    from shared.events import SafetySignalDetected

    outputs = run(
        [
            lab("ANC", 0.8, day=10, source_message_id="anc"),
            ae(term="Fever", grade=1, serious=False, source_message_id="fever"),
        ]
    )
    signals = [o.payload.signal for o in outputs if isinstance(o, SafetySignalDetected)]
    assert signals == ["febrile-neutropenia"]


def test_a_second_grade_3_immune_related_event_discontinues_toripalimab() -> None:
    def rash(n: int):
        return ae(
            term="Rash maculo-papular",
            grade=3,
            serious=False,
            immune_related=True,
            onset_date=f"2025-0{n + 4}-01",
            source_message_id=f"rash-{n}",
        )

    first, second = run([rash(1)]), run([rash(1), rash(2)])
    assert "IRAE-RECURRENT-G3-DISCONTINUE" not in _rule_ids(first)
    (decision,) = [
        o
        for o in second
        if isinstance(o, DoseDecisionMade) and o.payload.rule_id == "IRAE-RECURRENT-G3-DISCONTINUE"
    ]
    assert [(a.drug, a.action) for a in decision.payload.actions] == [
        (Drug.TORIPALIMAB, DoseAction.DISCONTINUE)
    ]


def test_cisplatin_is_held_below_50_ml_min_and_resumed_at_50() -> None:
    from tests.unit.factories import enrolment

    subject = enrolment(
        sex="M",
        age_years=70,
        weight_kg=60,
        platinum="cisplatin",
        baseline_creatinine={"value": 80, "unit": "umol/L"},
    )
    # Cockcroft-Gault: (140 - 70) x 60 / (72 x SCr mg/dL); 150 umol/L -> 34 mL/min; 90 -> 57.
    high = lab("CREAT", 150, "umol/L", reference_high=111, cycle=None, source_message_id="c1")
    back = lab("CREAT", 90, "umol/L", reference_high=111, cycle=None, source_message_id="c2")
    outputs = run([subject, high, back])
    decisions = [
        (d.payload.rule_id, [(a.drug.value, a.action.value) for a in d.payload.actions])
        for d in outputs
        if isinstance(d, DoseDecisionMade)
    ]
    assert ("CIS-CRCL-HOLD", [("cisplatin", "hold")]) in decisions
    assert ("CIS-CRCL-HOLD", [("cisplatin", "resume")]) in decisions


def test_explain_says_which_rule_holds_each_drug_and_why() -> None:
    from services.ctcae_grader.domain import step
    from services.ctcae_grader.explain import explain
    from shared.protocol import study_protocol
    from tests.unit.factories import enrolment

    protocol, state = study_protocol("NCT05173246"), None
    for event in (enrolment(platinum="carboplatin"), lab("ANC", 0.9, day=1)):
        state, _ = step(protocol, state, event)
    told = explain(protocol, state)
    assert told["drugs"]["nab-paclitaxel"]["status"] == "held"
    (held_by,) = told["drugs"]["nab-paclitaxel"]["held_by"]
    assert held_by["rule"] == "D1-ANC-HOLD" and "1.5" in held_by["why"]
    assert told["drugs"]["cisplatin"]["status"] == "not given (other platinum agent)"
    assert told["drugs"]["toripalimab"]["status"] == "given"
    assert [r["rule"] for r in told["rules_in_force"]] == ["D1-ANC-HOLD"]


def _rule_ids(outputs: list) -> list[str]:
    return [o.payload.rule_id for o in outputs if isinstance(o, DoseDecisionMade)]


def test_a_day1_hold_longer_than_7_days_reduces_nab_paclitaxel_and_carboplatin() -> None:
    from tests.unit.factories import enrolment

    def anc(value: float, on: str, n: int):
        return lab(
            "ANC", value, day=1, collected_at=f"{on}T07:30:00+08:00", source_message_id=f"anc-{n}"
        )

    within_a_week = run(
        [enrolment(platinum="carboplatin"), anc(0.9, "2025-04-07", 1), anc(1.8, "2025-04-14", 2)]
    )
    assert "D1-DELAY-REDUCE" not in _rule_ids(within_a_week)  # exactly 7 days: not more than 7
    longer = run(
        [
            enrolment(platinum="carboplatin"),
            anc(0.9, "2025-04-07", 1),
            anc(1.2, "2025-04-14", 2),
            anc(1.8, "2025-04-15", 3),
        ]
    )
    assert _rule_ids(longer) == ["D1-ANC-HOLD", "D1-DELAY-REDUCE", "D1-ANC-HOLD"]


def test_anc_below_0_5_for_more_than_7_days_reduces() -> None:
    def anc(value: float, on: str, n: int):
        return lab(
            "ANC", value, day=10, collected_at=f"{on}T07:30:00+08:00", source_message_id=f"g4-{n}"
        )

    seven = run([anc(0.4, "2025-04-10", 1), anc(0.3, "2025-04-17", 2)])
    assert "ANC-G4-7D-REDUCE" not in _rule_ids(seven)
    eight = run([anc(0.4, "2025-04-10", 1), anc(0.3, "2025-04-14", 2), anc(0.45, "2025-04-18", 3)])
    assert "ANC-G4-7D-REDUCE" in _rule_ids(eight)
    broken = run([anc(0.4, "2025-04-10", 1), anc(0.7, "2025-04-14", 2), anc(0.4, "2025-04-19", 3)])
    assert "ANC-G4-7D-REDUCE" not in _rule_ids(broken)  # the run was interrupted


@pytest.mark.parametrize(
    ("dose_mg", "flagged"), [(493, False), (540, False), (545, True), (440, True)]
)
def test_a_carboplatin_dose_off_calvert_by_more_than_10_percent_is_a_signal(
    dose_mg: float, flagged: bool
) -> None:
    from shared.events import SafetySignalDetected
    from tests.unit.factories import dose, enrolment

    # dose_rules.md CB-5: male, 60 y, 60 kg, creatinine 80 umol/L -> 73.7 mL/min -> 493 mg at AUC 5
    subject = enrolment(
        sex="M",
        age_years=60,
        weight_kg=60,
        platinum="carboplatin",
        enrolled_on="2025-03-03",
        baseline_creatinine={"value": 80, "unit": "umol/L"},
    )
    given = dose("carboplatin", 1, 1, "2025-03-03", dose=dose_mg, dose_unit="mg")
    signals = [o for o in run([subject, given]) if isinstance(o, SafetySignalDetected)]
    assert bool(signals) is flagged


@pytest.mark.parametrize(("grade", "held"), [(2, False), (3, True)])
def test_an_immune_related_rash_of_grade_3_withholds_toripalimab(grade: int, held: bool) -> None:
    rash = ae(
        term="Rash maculo-papular",
        grade=grade,
        serious=False,
        immune_related=True,
        source_message_id=f"rash-g{grade}",
    )
    assert ("IRAE-SKIN-WITHHOLD" in _rule_ids(run([rash]))) is held
