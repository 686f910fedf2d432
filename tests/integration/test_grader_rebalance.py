"""Two graders share the clinical topic: a second instance joins mid-stream and leaves again.
Partitions move between them both ways, and each must act on its subjects' whole history: the
decisions and alerts are exactly those one grader derives from the same events in order."""

import asyncio

import pytest

from services.ctcae_grader.app import create_app
from services.ctcae_grader.ledger import SubjectLedger
from shared.events import AlertRaised, DoseDecisionMade, Envelope
from shared.protocol import study_protocol
from shared.reference_ranges import load_reference_ranges
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS
from tests.support import events_of, produce_events, read_topic, running
from tests.unit.factories import STUDY, enrolment, lab

pytestmark = pytest.mark.integration
SUBJECTS = [f"GZ01-{n:03d}" for n in range(301, 313)]  # 12 subjects over 6 partitions


def anc(subject: str, value: float, cycle: int, tag: str) -> Envelope:
    return lab(
        "ANC",
        value,
        subject_id=subject,
        cycle=cycle,
        day=1,
        source_message_id=f"{subject}-{tag}",
        reference_low=1.8,
        reference_high=6.3,
    )


def phase(value: float, cycle: int, tag: str) -> list[Envelope]:
    return [anc(subject, value, cycle, tag) for subject in SUBJECTS]


def expected_ids(events: list[Envelope]) -> tuple[set, set]:
    """Decision and alert ids one grader derives from `events` in order (the pure core)."""
    protocol, ranges = study_protocol(STUDY), load_reference_ranges(None)
    ledgers: dict[str, SubjectLedger] = {}
    decisions, alerts = set(), set()
    for event in events:
        outputs = ledgers.setdefault(event.subject_id, SubjectLedger()).record(
            protocol, event, ranges
        )
        decisions |= {e.event_id for e in outputs.assessments if isinstance(e, DoseDecisionMade)}
        alerts |= {e.event_id for e in outputs.alerts if isinstance(e, AlertRaised)}
    return decisions, alerts


async def settled(
    settings: Settings, topic: str, kind: type, count: int, timeout_s: float = 30
) -> list[Envelope]:
    """The events on `topic` once `count` distinct ones of `kind` are there (or time is up)."""

    def enough(records: list) -> bool:
        return len({e.event_id for e in events_of(records) if isinstance(e, kind)}) >= count

    boot = settings.kafka_bootstrap_servers
    return events_of(await read_topic(boot, topic, enough, timeout_s=timeout_s))


async def test_a_grader_joining_and_leaving_loses_and_doubles_nothing(settings: Settings) -> None:
    boot, clinical = settings.kafka_bootstrap_servers, settings.topic(CLINICAL_EVENTS)
    enrolments = [
        enrolment(subject, source_message_id=f"{subject}-enrolment") for subject in SUBJECTS
    ]
    holds, recoveries, holds_again = phase(0.9, 2, "c2"), phase(2.5, 3, "c3"), phase(0.9, 4, "c4")
    decisions, alerts = expected_ids([*enrolments, *holds, *recoveries, *holds_again])
    assert len(alerts) >= 2 * len(SUBJECTS)  # a hold alert in cycle 2 and again in cycle 4

    async with running(create_app(settings)):
        await produce_events(boot, clinical, [*enrolments, *holds])
        await settled(settings, settings.topic(ALERTS), AlertRaised, len(SUBJECTS))
        async with running(create_app(settings)):  # the second grader joins: partitions move
            await asyncio.sleep(5)
            await produce_events(boot, clinical, recoveries)
            await asyncio.sleep(5)
        # ... and leaves: its partitions come back to the first, which did not see cycle 3.
        await produce_events(boot, clinical, holds_again)
        raised = await settled(settings, settings.topic(ALERTS), AlertRaised, len(alerts))
        assessed = await settled(
            settings, settings.topic(ASSESSMENTS), DoseDecisionMade, len(decisions)
        )
        # One more than expected never comes: read what is there after a few more seconds.
        raised = await settled(settings, settings.topic(ALERTS), AlertRaised, len(alerts) + 1, 4)

    raised_ids = [e.event_id for e in raised if isinstance(e, AlertRaised)]
    assert sorted(map(str, set(raised_ids))) == sorted(map(str, alerts))
    decided = {e.event_id for e in assessed if isinstance(e, DoseDecisionMade)}
    assert decided == decisions
