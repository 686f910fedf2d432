"""The rules engine skips a rule not in force when the event changed nothing its condition
reads. That is an optimisation only: on whole trial histories with toxicities written in, every
grade, decision, signal and alert (ids and content) is the same as when every rule is evaluated
at every event."""

import pytest

from services.ctcae_grader import rules_engine
from services.ctcae_grader.domain import step
from services.ctcae_grader.ledger import SubjectLedger
from shared.events import DoseDecisionMade, Envelope
from shared.protocol import Protocol, Rule, RuleStatus, study_protocol
from shared.reference_ranges import load_reference_ranges
from tests.faults.stream import build_stream, event_of
from tests.unit.factories import ae, dose, enrolment, lab

PROTOCOL = study_protocol("NCT05173246")
RANGES = load_reference_ranges(None)


def every_rule(protocol: Protocol, *_: object) -> list:
    return list(protocol.rules)


def outputs_of(events: list[Envelope]) -> list[str]:
    ledgers: dict[str, SubjectLedger] = {}
    published = []
    for event in events:
        ledger = ledgers.setdefault(event.subject_id, SubjectLedger())
        outputs = ledger.record(PROTOCOL, event, RANGES)
        published += [
            o.model_dump_json(exclude={"recorded_at"})
            for o in [*outputs.assessments, *outputs.alerts]
        ]
    return published


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skipping_rules_changes_no_outcome(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [event_of(s) for s in build_stream(seed, subjects=12, cycles=4, toxicity=0.5)]
    skipping = outputs_of(events)
    monkeypatch.setattr(rules_engine, "_rules_to_evaluate", every_rule)
    evaluating_all = outputs_of(events)
    assert len(skipping) > 100
    assert skipping == evaluating_all


def test_a_lab_result_evaluates_only_the_rules_that_read_it_or_are_in_force() -> None:
    changed = rules_engine._changed_by(
        event_of(next(s for s in build_stream(1, 1, 1, 0.0) if s.endpoint == "/v1/labs"))
    )
    assert changed is not None
    fresh = rules_engine.PatientState(subject_id="GZ01-001")
    evaluated = rules_engine._rules_to_evaluate(PROTOCOL, fresh, changed)
    assert 0 < len(evaluated) < len(PROTOCOL.rules)


def test_a_rule_resumed_while_its_condition_still_holds_is_evaluated_at_the_next_event() -> None:
    """A hold lifted at the next cycle while the low count behind it is still the latest result
    applies again at the following event, even one that changes nothing the rule reads (as it
    would if every rule were evaluated at every event)."""
    rule = Rule.model_validate(
        {
            "id": "ANC-CYCLE-HOLD",
            "description": "ANC below 1.5 x10^9/L holds nab-paclitaxel until the next cycle",
            "when": {"lab": "NEUT", "below": 1.5, "unit": "10*9/L"},
            "actions": {"nab-paclitaxel": "hold"},
            "resume_when": {"next_cycle": True},
            "severity": "high",
            "source": "a rule made up to reach the case",
            "status": RuleStatus.CONFIRMED,
        }
    )
    protocol = PROTOCOL.model_copy(update={"rules": (rule,)})
    history = [
        enrolment(),
        dose("nab-paclitaxel", cycle=1, day=1, on="2025-03-03"),
        lab("ANC", 1.0, cycle=1, day=8, source_message_id="anc-low"),
        dose("nab-paclitaxel", cycle=2, day=1, on="2025-03-24"),  # resumes: next cycle
        ae(subject_id="GZ01-005", term="Fatigue", grade=1, serious=False),  # reads no count
    ]

    def actions_per_event() -> list[list[tuple[str, ...]]]:
        state, per_event = None, []
        for event in history:
            state, assessment = step(protocol, state, event, RANGES)
            per_event.append(
                [
                    tuple(f"{a.action.value} {a.drug.value}" for a in d.payload.actions)
                    for d in assessment.assessments
                    if isinstance(d, DoseDecisionMade)
                ]
            )
        return per_event

    skipping = actions_per_event()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules_engine, "_rules_to_evaluate", every_rule)
        evaluating_all = actions_per_event()
    assert skipping == evaluating_all
    assert skipping[2:] == [
        [("hold nab-paclitaxel",)],
        [("resume nab-paclitaxel",)],
        [("hold nab-paclitaxel",)],
    ]
