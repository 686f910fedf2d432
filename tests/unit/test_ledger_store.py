"""The subject ledger keeps its events and states in the process's scratch store: clones share
their past and never see each other's later events, states come back from the store exactly,
and what no ledger holds any more is deleted."""

import gc
from datetime import UTC, datetime, timedelta

from services.ctcae_grader import ledger as ledger_module
from services.ctcae_grader.explain import explain
from services.ctcae_grader.ledger import SubjectLedger
from shared.events import Envelope
from shared.protocol import study_protocol
from tests.unit.factories import dose, enrolment, lab

PROTOCOL = study_protocol("NCT05173246")


def history(subject_id: str, anc: float) -> list[Envelope]:
    day1 = datetime(2025, 3, 3, 7, 30, tzinfo=UTC)
    return [
        enrolment(subject_id),
        lab("ANC", anc, subject_id=subject_id, collected_at=day1, source_message_id=f"{anc}"),
        lab("PLT", 160.0, subject_id=subject_id, collected_at=day1, source_message_id="p"),
        dose("toripalimab", 1, 1, "2025-03-03", subject_id=subject_id),
        lab(
            "ANC",
            anc + 0.5,
            subject_id=subject_id,
            cycle=1,
            day=8,
            collected_at=day1 + timedelta(days=7),
            source_message_id=f"{anc}-d8",
        ),
    ]


def recorded(events: list[Envelope]) -> SubjectLedger:
    ledger = SubjectLedger()
    for event in events:
        ledger.record(PROTOCOL, event, None)
    return ledger


def test_clones_share_their_past_and_not_what_each_adds_after() -> None:
    base = recorded(history("GZ01-005", 0.9)[:3])
    first, second = base.clone(), base.clone()
    first.record(PROTOCOL, history("GZ01-005", 0.9)[3], None)  # a draft given up
    second.record(PROTOCOL, history("GZ01-005", 0.9)[4], None)  # the one kept

    assert [e.event_id for e in base.events] == [e.event_id for e in history("GZ01-005", 0.9)[:3]]
    assert len(first.events) == len(second.events) == 4
    assert first.events[3].event_type == "DoseAdministered"
    assert second.events[3].event_type == "LabResultReported"
    fresh = recorded([*history("GZ01-005", 0.9)[:3], history("GZ01-005", 0.9)[4]])
    assert explain(PROTOCOL, second.state) == explain(PROTOCOL, fresh.state)
    assert explain(PROTOCOL, base.state) == explain(PROTOCOL, recorded(base.events).state)


def test_states_written_out_come_back_as_they_were() -> None:
    subjects = ledger_module.STATES_IN_MEMORY + 50  # more than stay in memory
    ledgers = {f"GZ01-{n:03d}": SubjectLedger() for n in range(subjects)}
    for step in range(5):  # interleaved, as a log interleaves subjects
        for n, (subject_id, ledger) in enumerate(ledgers.items()):
            ledger.record(PROTOCOL, history(subject_id, 0.5 + n / 100)[step], None)
    for n, (subject_id, ledger) in enumerate(ledgers.items()):
        fresh = recorded(history(subject_id, 0.5 + n / 100))
        assert ledger.state == fresh.state
        assert explain(PROTOCOL, ledger.state) == explain(PROTOCOL, fresh.state)


def test_a_ledger_its_clones_moved_on_from_still_has_its_own_state() -> None:
    events = history("GZ01-007", 0.9)
    behind = recorded(events[:2])
    ahead = behind.clone()
    for event in events[2:]:
        ahead.record(PROTOCOL, event, None)
    for n in range(ledger_module.STATES_IN_MEMORY + 10):  # push both out of memory
        recorded([enrolment(f"SH02-{n:03d}", site_id="SH02")])

    assert behind.state == recorded(events[:2]).state
    assert ahead.state == recorded(events).state
    assert behind.record(PROTOCOL, events[2], None).assessments  # and goes on from there


def test_what_no_ledger_holds_any_more_is_deleted() -> None:
    store = ledger_module._the_store()

    def stored_rows() -> int:
        gc.collect()
        store._sweep()  # what the next use of the store does first
        store._flush()
        return store.db.execute("SELECT count(*) FROM events").fetchone()[0]

    kept = recorded(history("GZ01-009", 1.1))
    before = stored_rows()
    dropped = recorded(history("BJ03-001", 1.1))
    assert stored_rows() == before + 5
    del dropped
    kept.record(
        PROTOCOL, lab("K", 4.0, "mmol/L", subject_id="GZ01-009", source_message_id="k"), None
    )
    assert stored_rows() == before + 1  # the dropped subject's five rows gone
    assert len(kept.events) == 6
