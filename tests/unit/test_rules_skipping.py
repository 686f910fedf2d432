"""The rules engine skips a rule not in force when the event changed nothing its condition
reads. That is an optimisation only: on whole trial histories with toxicities written in, every
grade, decision, signal and alert (ids and content) is the same as when every rule is evaluated
at every event."""

import pytest

from services.ctcae_grader import rules_engine
from services.ctcae_grader.ledger import SubjectLedger
from shared.events import Envelope
from shared.protocol import Protocol, study_protocol
from shared.reference_ranges import load_reference_ranges
from tests.faults.stream import build_stream, event_of

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
