"""Protocol files: the shipped NCT05173246 protocol loads as the trial's rules; a broken file is
refused with the file, the path to the field and the reason; a second trial is a second file.

Strict xfails mark defects found here; each reason starts with DEFECT and says what is wrong.
"""

import copy
import re
from pathlib import Path

import pytest
import yaml

from services.ctcae_grader.domain import step
from services.ingest.domain import AdverseEventIn, adverse_event, lab_event
from shared.events import DoseDecisionMade, Drug
from shared.protocol import (
    PROTOCOLS_DIR,
    Protocol,
    ProtocolError,
    RuleStatus,
    load_protocol,
    parse_protocol,
    study_protocol,
)
from tests.unit.factories import lab, lab_request

SHIPPED = PROTOCOLS_DIR / "NCT05173246.yaml"
OTHER_TRIAL = Path(__file__).resolve().parents[1] / "data" / "protocol_other_trial.yaml"
OTHER_STUDY = "SAFETYMON-TEST-002"

# The 21 rules this file was reviewed against (the file may hold more).
REVIEWED_RULES = {
    "D1-ANC-HOLD": RuleStatus.LABEL_DEFAULT,
    "D1-PLT-HOLD": RuleStatus.LABEL_DEFAULT,
    "D8-NP-SKIP": RuleStatus.LABEL_DEFAULT,
    "D8-NP-REDUCE": RuleStatus.LABEL_DEFAULT,
    "PLT-BELOW-50-REDUCE": RuleStatus.LABEL_DEFAULT,
    "NP-HEPATIC-STOP": RuleStatus.LABEL_DEFAULT,
    "TORI-HEPATITIS-WITHHOLD": RuleStatus.LABEL_DEFAULT,
    "TORI-HEPATITIS-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "TORI-HEPATITIS-LM-WITHHOLD": RuleStatus.LABEL_DEFAULT,
    "TORI-HEPATITIS-LM-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "TORI-NEPHRITIS-WITHHOLD": RuleStatus.LABEL_DEFAULT,
    "TORI-NEPHRITIS-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "PSN-G3-HOLD": RuleStatus.LABEL_DEFAULT,
    "IRAE-PNEUMONITIS-WITHHOLD": RuleStatus.LABEL_DEFAULT,
    "IRAE-PNEUMONITIS-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "IRAE-COLITIS-WITHHOLD": RuleStatus.LABEL_DEFAULT,
    "IRAE-COLITIS-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "IRAE-MYOCARDITIS-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "IRAE-SJS-TEN-HOLD": RuleStatus.LABEL_DEFAULT,
    "IRAE-INFUSION-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
    "IRAE-ANY-G4-DISCONTINUE": RuleStatus.LABEL_DEFAULT,
}


@pytest.fixture(scope="module")
def shipped() -> Protocol:
    return load_protocol(SHIPPED)


@pytest.fixture(scope="module")
def shipped_yaml() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


# ---------------------------------------------------------------------------------------------
# The shipped protocol
# ---------------------------------------------------------------------------------------------


def test_the_shipped_protocol_loads(shipped: Protocol, shipped_yaml: dict) -> None:
    assert shipped.study_id == "NCT05173246"
    assert shipped.ctcae_version == "4.03"
    assert len(shipped.rules) == len(shipped_yaml["rules"]) >= len(REVIEWED_RULES)
    ids = [rule.id for rule in shipped.rules]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in REVIEWED_RULES] == list(REVIEWED_RULES)  # in file order
    assert study_protocol("NCT05173246") == shipped


def test_the_shipped_regimen(shipped: Protocol) -> None:
    regimen = shipped.regimen
    assert regimen.cycle_length_days == 21
    drugs = {drug: (d.dose, d.unit, d.days, d.dose_levels) for drug, d in regimen.drugs.items()}
    assert drugs == {
        Drug.TORIPALIMAB: (240, "mg", (1,), (240,)),  # no dose reduction: withhold or stop
        Drug.NAB_PACLITAXEL: (220, "mg/m2", (1, 8), (220, 180, 140)),
        Drug.CISPLATIN: (75, "mg/m2", (1,), (75, 60, 50)),
        Drug.CARBOPLATIN: (5, "AUC", (1,), (5, 4, 3)),
    }
    assert regimen.platinum == (Drug.CISPLATIN, Drug.CARBOPLATIN)


def test_every_rule_says_where_it_comes_from_and_how_sure(shipped_yaml: dict) -> None:
    for raw in shipped_yaml["rules"]:
        assert raw["source"].startswith("dose_rules.md "), raw["id"]  # a row of the research note
        assert raw["status"] in {status.value for status in RuleStatus}, raw["id"]
        assert raw["description"].strip(), raw["id"]


def test_the_reviewed_rules_carry_the_status_read_in_the_file(shipped: Protocol) -> None:
    statuses = {rule.id: rule.status for rule in shipped.rules if rule.id in REVIEWED_RULES}
    assert statuses == REVIEWED_RULES


def test_rules_from_label_analogues_and_class_templates_are_label_defaults(
    shipped: Protocol,
) -> None:
    # A class-wide template (another anti-PD-1's label), the nab-paclitaxel label's tables for other
    # regimens, or the unconfirmed dose ladder (dose_rules.md 2.1) cannot be confirmed rules.
    analogue = re.compile(r"class template|pancreatic table|NSCLC table|dose_rules\.md 2\.1")
    for rule in shipped.rules:
        if analogue.search(rule.source):
            assert rule.status is RuleStatus.LABEL_DEFAULT, rule.id


def test_every_dose_rule_taken_from_a_label_is_marked_label_default(shipped: Protocol) -> None:
    label = re.compile(r"USPI|label|ASCO|class template")
    confirmed = [
        rule.id
        for rule in shipped.rules
        if rule.actions and label.search(rule.source) and rule.status is RuleStatus.CONFIRMED
    ]
    assert confirmed == []


def test_a_decision_says_the_rules_status(shipped: Protocol) -> None:
    event = lab("ANC", 0.9, cycle=2, day=1, source_message_id="status-1")
    _, assessment = step(shipped, None, event)
    (decision,) = [e for e in assessment.assessments if isinstance(e, DoseDecisionMade)]
    assert decision.payload.source == (
        "dose_rules.md RT-1 / NP-1 (Abraxane USPI sec. 2, S6) "
        "[label default, confirm against protocol]"
    )
    (alert,) = assessment.alerts
    assert alert.payload.detail.endswith("[label default, confirm against protocol]")


# ---------------------------------------------------------------------------------------------
# Refusals: a small valid protocol, broken one field at a time
# ---------------------------------------------------------------------------------------------


def _rule(rule_id: str, when: dict, actions: dict, **more) -> dict:
    return {
        "id": rule_id,
        "description": f"{rule_id} test rule",
        "when": when,
        "actions": actions,
        **more,
        "severity": "high",
        "source": "test",
        "status": "confirmed",
    }


def valid() -> dict:
    """A small protocol every refusal test breaks in one place; rules 0-3 by index."""
    return {
        "study_id": "TEST-001",
        "title": "refusal tests",
        "ctcae_version": "4.03",
        "regimen": {
            "cycle_length_days": 21,
            "source": "test",
            "drugs": {
                "toripalimab": {"dose": 240, "unit": "mg", "days": [1], "dose_levels": [240]},
                "nab-paclitaxel": {
                    "dose": 220,
                    "unit": "mg/m2",
                    "days": [1, 8],
                    "dose_levels": [220, 180],
                },
                "cisplatin": {"dose": 75, "unit": "mg/m2", "days": [1], "dose_levels": [75, 60]},
                "carboplatin": {"dose": 5, "unit": "AUC", "days": [1], "dose_levels": [5, 4]},
            },
            "platinum": ["cisplatin", "carboplatin"],
        },
        "rules": [
            _rule(
                "ANC-HOLD",
                {"lab": "NEUT", "visit_days": [1], "below": 1.5, "unit": "10*9/L"},
                {"nab-paclitaxel": "hold", "platinum": "hold"},
                resume_when={"lab": "NEUT", "at_least": 1.5, "unit": "10*9/L"},
            ),
            _rule(
                "BANDS",
                {
                    "any": [
                        {"lab": "NEUT", "at_least": 0.5, "below": 1.0, "unit": "10*9/L"},
                        {"lab": "AST", "above_uln": 3, "at_most_uln": 8},
                    ]
                },
                {"nab-paclitaxel": "reduce"},
            ),
            _rule(
                "CREAT-G2",
                {"term": "Creatinine increased", "min_grade": 2, "max_grade": 2},
                {"toripalimab": "hold"},
            ),
            _rule(
                "PSN-G3",
                {"ae": ["Peripheral sensory neuropathy"], "min_grade": 3},
                {"nab-paclitaxel": "hold", "cisplatin": "hold"},
            ),
        ],
    }


def refusal(data: dict) -> str:
    with pytest.raises(ProtocolError) as refused:
        parse_protocol(yaml.safe_dump(data, sort_keys=False), "trial.yaml")
    return str(refused.value)


def changed(change) -> dict:
    data = copy.deepcopy(valid())
    change(data)
    return data


def rule(data: dict, index: int) -> dict:
    return data["rules"][index]


def test_the_small_protocol_is_valid() -> None:
    protocol = parse_protocol(yaml.safe_dump(valid()), "trial.yaml")
    assert [r.id for r in protocol.rules] == ["ANC-HOLD", "BANDS", "CREAT-G2", "PSN-G3"]


REFUSALS = {
    "unknown lab test": (
        lambda d: rule(d, 0)["when"].update(lab="NEUTROPHILZ"),
        "trial.yaml: rules.0.when.lab: unknown lab test 'NEUTROPHILZ'",
    ),
    "unit foreign to the test": (
        lambda d: rule(d, 0)["when"].update(unit="g/dL"),
        "trial.yaml: rules.0.when.unit: 'g/dL' is not a unit for NEUT; use a unit convertible to "
        "/mm3 or 10*9/L",
    ),
    "unit foreign to the test in resume_when": (
        lambda d: rule(d, 0)["resume_when"].update(unit="mmol/L"),
        "trial.yaml: rules.0.resume_when.unit: 'mmol/L' is not a unit for NEUT; use a unit "
        "convertible to /mm3 or 10*9/L",
    ),
    "zero threshold": (
        lambda d: rule(d, 0)["when"].update(below=0),
        "trial.yaml: rules.0.when.below: Input should be greater than 0",
    ),
    "negative threshold": (
        lambda d: rule(d, 0)["when"].update(below=-1.5),
        "trial.yaml: rules.0.when.below: Input should be greater than 0",
    ),
    "negative at_least": (
        lambda d: rule(d, 0)["resume_when"].update(at_least=-1),
        "trial.yaml: rules.0.resume_when.at_least: Input should be greater than or equal to 0",
    ),
    "zero ULN multiple": (
        lambda d: rule(d, 1)["when"]["any"][1].update(above_uln=0),
        "trial.yaml: rules.1.when.any.1.above_uln: Input should be greater than 0",
    ),
    "at_least equal to below": (
        lambda d: rule(d, 1)["when"]["any"][0].update(at_least=1.0),
        "trial.yaml: rules.1.when.any.0: at_least/below: the lower limit 1 is not below 1",
    ),
    "at_least above below": (
        lambda d: rule(d, 1)["when"]["any"][0].update(at_least=1.2),
        "trial.yaml: rules.1.when.any.0: at_least/below: the lower limit 1.2 is not below 1",
    ),
    "above_uln not below at_most_uln": (
        lambda d: rule(d, 1)["when"]["any"][1].update(above_uln=8),
        "trial.yaml: rules.1.when.any.1: above_uln/at_most_uln: the lower limit 8 is not below 8",
    ),
    "absolute limit without unit": (
        lambda d: rule(d, 0)["when"].pop("unit"),
        "trial.yaml: rules.0.when: absolute limits need their unit",
    ),
    "lab condition without a limit": (
        lambda d: rule(d, 0).update(when={"lab": "NEUT", "visit_days": [1]}),
        "trial.yaml: rules.0.when: a lab condition needs at least one limit",
    ),
    "a drug outside the regimen in actions": (
        lambda d: rule(d, 0)["actions"].update(paclitaxel="hold"),
        "trial.yaml: protocol: rule ANC-HOLD: paclitaxel is not in the regimen",
    ),
    "a drug name that is not one": (
        lambda d: rule(d, 0)["actions"].update({"Nab Paclitaxel!": "hold"}),
        "trial.yaml: rules.0.actions: 'Nab Paclitaxel!' is not a drug name (lowercase letters, "
        "digits, hyphens)",
    ),
    "unknown action": (
        lambda d: rule(d, 0)["actions"].update({"nab-paclitaxel": "pause"}),
        "trial.yaml: rules.0.actions.nab-paclitaxel: Input should be 'proceed', 'hold', 'reduce', "
        "'discontinue' or 'resume'",
    ),
    "drug not in the regimen": (
        lambda d: (
            d["regimen"]["drugs"].pop("cisplatin"),
            d["regimen"].update(platinum=["carboplatin"]),
        ),
        "trial.yaml: protocol: rule PSN-G3: cisplatin is not in the regimen",
    ),
    "'platinum' with no platinum in the regimen": (
        lambda d: d["regimen"].update(platinum=[]),
        "trial.yaml: protocol: rule ANC-HOLD: 'platinum' but the regimen names none",
    ),
    "platinum agent missing from the drugs": (
        lambda d: d["regimen"]["drugs"].pop("carboplatin"),
        "trial.yaml: regimen: platinum agents ['carboplatin'] are not in the regimen's drugs",
    ),
    "unknown AE term, with a suggestion": (
        lambda d: rule(d, 3)["when"].update(ae=["Peripheral sensory neuropathi"]),
        "trial.yaml: rules.3.when.ae: unknown CTCAE v4.03 term 'Peripheral sensory neuropathi'; "
        "did you mean: Peripheral sensory neuropathy or Peripheral motor neuropathy?",
    ),
    "unknown lab term in a grade condition": (
        lambda d: rule(d, 2)["when"].update(term="Creatinine raised"),
        "trial.yaml: rules.2.when.term: 'Creatinine raised' is not a CTCAE v4.03 lab term "
        "safetymon grades",
    ),
    "duplicate rule id": (
        lambda d: rule(d, 3).update(id="ANC-HOLD"),
        "trial.yaml: protocol: rule id ANC-HOLD is used twice",
    ),
    "dose levels not starting at the dose": (
        lambda d: d["regimen"]["drugs"]["cisplatin"].update(dose_levels=[70, 60]),
        "trial.yaml: regimen.drugs.cisplatin: dose_levels must start at the dose 75",
    ),
    "dose levels repeating a level": (
        lambda d: d["regimen"]["drugs"]["cisplatin"].update(dose_levels=[75, 75, 50]),
        "trial.yaml: regimen.drugs.cisplatin: dose_levels must strictly decrease",
    ),
    "dose levels increasing": (
        lambda d: d["regimen"]["drugs"]["carboplatin"].update(dose_levels=[5, 6]),
        "trial.yaml: regimen.drugs.carboplatin: dose_levels must strictly decrease",
    ),
    "condition with none of the known keys": (
        lambda d: rule(d, 0).update(when={"labtest": "NEUT", "below": 1.5}),
        "trial.yaml: rules.0.when: a condition needs one of:",
    ),
    "nested condition with none of the known keys": (
        lambda d: rule(d, 1)["when"]["any"].append({"test": "NEUT"}),
        "trial.yaml: rules.1.when.any.2: a condition needs one of:",
    ),
    "status not one of the two": (
        lambda d: rule(d, 0).update(status="label default"),
        "trial.yaml: rules.0.status: Input should be 'confirmed' or 'label default, confirm "
        "against protocol'",
    ),
    "rule without a source": (
        lambda d: rule(d, 0).pop("source"),
        "trial.yaml: rules.0.source: Field required",
    ),
}


@pytest.mark.parametrize(("change", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_broken_protocol_is_refused_naming_file_field_and_reason(change, message: str) -> None:
    text = refusal(changed(change))
    if message.endswith("one of:"):
        assert text.startswith(message)
        for key in ("lab", "term", "ae", "immune_related", "next_cycle", "any", "all"):
            assert re.search(rf"\b{key}\b", text.removeprefix(message)), key
    else:
        assert text == message


def test_every_problem_is_reported_at_once() -> None:
    def two_problems(d: dict) -> None:
        rule(d, 0)["when"].update(lab="XYZ")
        rule(d, 3)["when"].update(ae=["Pneumonits"])

    text = refusal(changed(two_problems))
    assert text.startswith("trial.yaml: ")
    assert "rules.0.when.lab: unknown lab test 'XYZ'" in text
    assert (
        "rules.3.when.ae: unknown CTCAE v4.03 term 'Pneumonits'; did you mean: Pneumonitis" in text
    )


def test_invalid_yaml_is_refused_with_where_it_broke() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_protocol("study_id: X\nrules: [{id: A, when: {lab: NEUT}\n", "broken.yaml")
    text = str(refused.value)
    assert text.startswith("broken.yaml: not valid YAML: ")
    assert "line 3" in text


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_protocol("- just\n- a list\n", "list.yaml")
    assert str(refused.value) == (
        "list.yaml: protocol: Input should be a valid dictionary or instance of Protocol"
    )


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ProtocolError) as refused:
        load_protocol(missing)
    assert str(refused.value) == f"{missing}: No such file or directory"


def test_load_protocol_names_the_file_it_read(tmp_path: Path) -> None:
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(changed(lambda d: rule(d, 0)["when"].update(lab="XYZ"))))
    with pytest.raises(ProtocolError) as refused:
        load_protocol(path)
    assert str(refused.value) == f"{path}: rules.0.when.lab: unknown lab test 'XYZ'"


def test_the_study_id_must_match_the_file() -> None:
    with pytest.raises(ProtocolError) as refused:
        study_protocol("NCT00000001", str(SHIPPED))
    assert str(refused.value) == f"{SHIPPED}: is the protocol of NCT05173246, not NCT00000001"


def test_a_study_id_mismatch_found_by_study_id_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.protocol.PROTOCOLS_DIR", tmp_path)
    (tmp_path / "NCT00000002.yaml").write_text(SHIPPED.read_text())
    with pytest.raises(ProtocolError) as refused:
        study_protocol("NCT00000002")
    assert str(refused.value).startswith(str(tmp_path / "NCT00000002.yaml"))


@pytest.mark.parametrize("rule_index", [2, 3])
def test_min_grade_above_max_grade_is_refused(rule_index: int) -> None:
    data = changed(lambda d: rule(d, rule_index)["when"].update(min_grade=3, max_grade=2))
    assert "min_grade" in refusal(data)


def test_an_empty_lln_band_is_refused() -> None:
    data = changed(
        lambda d: rule(d, 1).update(when={"lab": "PLAT", "at_least_lln": 2, "below_lln": 1})
    )
    assert "at_least_lln/below_lln" in refusal(data)


# ---------------------------------------------------------------------------------------------
# A second trial is configuration, not code
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other() -> Protocol:
    return load_protocol(OTHER_TRIAL)


def other_lab(test: str, value: float, unit: str = "10^9/L", **overrides):
    overrides.setdefault("subject_id", "T2-001")
    return lab_event(lab_request(test, value, unit, **overrides), OTHER_STUDY)


def other_ae(term: str, grade: int, message_id: str):
    request = AdverseEventIn(
        subject_id="T2-001",
        site_id="T2",
        term=term,
        grade=grade,
        immune_related=True,
        onset_date="2025-05-10",
        source_message_id=message_id,
    )
    return adverse_event(request, OTHER_STUDY)


def run_other(protocol: Protocol, events: list) -> list:
    state, outcomes = None, []
    for event in events:
        state, assessment = step(protocol, state, event)
        outcomes.append(assessment)
    return outcomes


def actions(assessment) -> list[tuple[str, tuple]]:
    return [
        (
            d.payload.rule_id,
            tuple(
                (a.drug.value, a.action.value, a.from_level, a.to_level) for a in d.payload.actions
            ),
        )
        for d in assessment.assessments
        if isinstance(d, DoseDecisionMade)
    ]


def test_the_other_trial_loads(other: Protocol) -> None:
    assert other.study_id == OTHER_STUDY
    assert [r.id for r in other.rules] == [
        "T2-D1-ANC-HOLD",
        "T2-PLT-REDUCE",
        "T2-AST-WITHHOLD",
        "T2-IRAE-G3-DISCONTINUE",
    ]
    assert set(other.regimen.drugs) == {Drug.TORIPALIMAB, Drug.CARBOPLATIN}
    assert other.regimen.drugs[Drug.CARBOPLATIN].dose_levels == (5, 4)
    assert study_protocol(OTHER_STUDY, str(OTHER_TRIAL)) == other  # as the grader loads it


def test_the_other_trial_holds_at_its_own_day1_threshold(other: Protocol) -> None:
    shipped = study_protocol("NCT05173246")
    fit_here = other_lab("ANC", 1.2, cycle=2, day=1, source_message_id="t2-1")
    assert actions(run_other(other, [fit_here])[0]) == []
    assert [r for r, _ in actions(run_other(shipped, [fit_here])[0])] == ["D1-ANC-HOLD"]

    at_limit = other_lab("ANC", 1.0, cycle=2, day=1, source_message_id="t2-2")
    assert actions(run_other(other, [at_limit])[0]) == []

    low = other_lab(
        "ANC", 999, "/mm3", reference_low=1800, reference_high=6300, source_message_id="t2-3"
    )
    recovered = other_lab("ANC", 1.0, cycle=2, day=1, source_message_id="t2-4")
    held, resumed = run_other(other, [low, recovered])
    # 'platinum' is the regimen's only agent, carboplatin, even before enrolment
    assert actions(held) == [("T2-D1-ANC-HOLD", (("carboplatin", "hold", 0, 0),))]
    (decision,) = [d for d in held.assessments if isinstance(d, DoseDecisionMade)]
    assert decision.payload.source == "fixture rule 1 [confirmed]"
    assert decision.study_id == OTHER_STUDY
    assert [a.payload.rule_id for a in held.alerts] == ["T2-D1-ANC-HOLD"]
    assert actions(resumed) == [("T2-D1-ANC-HOLD", (("carboplatin", "resume", 0, 0),))]


def test_the_other_trial_uses_its_own_dose_levels(other: Protocol) -> None:
    outcomes = run_other(
        other,
        [
            other_lab("PLT", 70, cycle=2, day=15, source_message_id="t2-p1"),
            other_lab("PLT", 160, cycle=3, day=1, source_message_id="t2-p2"),
            other_lab("PLT", 60, cycle=3, day=15, source_message_id="t2-p3"),
        ],
    )
    assert [actions(o) for o in outcomes] == [
        [("T2-PLT-REDUCE", (("carboplatin", "reduce", 0, 1),))],
        [],
        [("T2-PLT-REDUCE", (("carboplatin", "discontinue", 1, None),))],  # no level below 4
    ]


def test_the_other_trial_stops_toripalimab_at_an_immune_grade_3(other: Protocol) -> None:
    (outcome,) = run_other(other, [other_ae("Hypothyroidism", 3, "t2-ae1")])
    assert actions(outcome) == [
        ("T2-IRAE-G3-DISCONTINUE", (("toripalimab", "discontinue", 0, None),))
    ]
    (shipped_outcome,) = run_other(
        study_protocol("NCT05173246"), [other_ae("Hypothyroidism", 3, "t2-ae2")]
    )
    assert ("toripalimab", "discontinue", 0, None) not in [
        a for _, acts in actions(shipped_outcome) for a in acts
    ]


def test_a_trial_of_another_drug_is_a_new_file() -> None:
    data = yaml.safe_load(OTHER_TRIAL.read_text())
    data["regimen"]["drugs"]["pembrolizumab"] = data["regimen"]["drugs"].pop("toripalimab")
    data["regimen"]["drugs"]["pembrolizumab"].update(dose=200, dose_levels=[200])
    for raw in data["rules"]:
        if "toripalimab" in raw["actions"]:
            raw["actions"] = {"pembrolizumab": raw["actions"]["toripalimab"]}
    protocol = parse_protocol(yaml.safe_dump(data, sort_keys=False), "pembrolizumab.yaml")
    assert "pembrolizumab" in {str(drug) for drug in protocol.regimen.drugs}
