"""The grader against the real broker: grades, decisions, alerts out; poison to the dead letters."""

import pytest

from services.ctcae_grader.app import create_app
from shared.events import AlertRaised, DoseDecisionMade, LabGraded
from shared.settings import Settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS, DEAD_LETTER_HEADERS, DEAD_LETTERS
from tests.support import events_of, produce, produce_events, read_topic, running
from tests.unit.factories import lab

pytestmark = pytest.mark.integration


async def test_a_day1_neutropenia_is_graded_held_and_alerted(settings: Settings) -> None:
    boot = settings.kafka_bootstrap_servers
    async with running(create_app(settings)):
        await produce_events(boot, settings.topic(CLINICAL_EVENTS), [lab("ANC", 0.9)])
        assessed = await read_topic(boot, settings.topic(ASSESSMENTS), lambda r: len(r) >= 2)
        alerts = await read_topic(boot, settings.topic(ALERTS), lambda r: len(r) >= 1)

    graded = [e for e in events_of(assessed) if isinstance(e, LabGraded)]
    decisions = [e for e in events_of(assessed) if isinstance(e, DoseDecisionMade)]
    assert [(g.payload.term, g.payload.grade) for g in graded] == [
        ("Neutrophil count decreased", 3)
    ]
    assert [d.payload.rule_id for d in decisions] == ["D1-ANC-HOLD"]
    (alert,) = events_of(alerts)
    assert isinstance(alert, AlertRaised) and alert.payload.rule_id == "D1-ANC-HOLD"
    assert all(r.key == b"GZ01-005" for r in [*assessed, *alerts])


async def test_a_poison_message_goes_to_the_dead_letters_and_the_next_is_graded(
    settings: Settings,
) -> None:
    boot = settings.kafka_bootstrap_servers
    async with running(create_app(settings)):
        await produce(
            boot,
            settings.topic(CLINICAL_EVENTS),
            [
                (b"GZ01-005", b"{not json"),
                (b"GZ01-005", b'{"event_type": "LabResultReported"}'),
            ],
        )
        await produce_events(boot, settings.topic(CLINICAL_EVENTS), [lab("PLT", 42, day=8)])
        dead = await read_topic(boot, settings.topic(DEAD_LETTERS), lambda r: len(r) >= 2)
        assessed = await read_topic(boot, settings.topic(ASSESSMENTS), lambda r: len(r) >= 3)

    assert [record.value for record in dead] == [
        b"{not json",
        b'{"event_type": "LabResultReported"}',
    ]
    headers = [dict(record.headers) for record in dead]
    assert b"Invalid JSON" in headers[0][DEAD_LETTER_HEADERS.reason]
    assert b"subject_id: Field required" in headers[1][DEAD_LETTER_HEADERS.reason]
    assert headers[0][DEAD_LETTER_HEADERS.source_topic] == settings.topic(CLINICAL_EVENTS).encode()
    assert headers[1][DEAD_LETTER_HEADERS.source_offset] == b"1"
    (graded,) = [e for e in events_of(assessed) if isinstance(e, LabGraded)]
    assert graded.payload.term == "Platelet count decreased" and graded.payload.grade == 3


async def test_a_derived_event_on_the_clinical_topic_is_refused_with_the_reason(
    settings: Settings,
) -> None:
    boot = settings.kafka_bootstrap_servers
    from services.ctcae_grader.domain import assess

    misplaced = assess(lab("ANC", 0.9)).alerts[0]
    async with running(create_app(settings)):
        await produce_events(boot, settings.topic(CLINICAL_EVENTS), [misplaced])
        dead = await read_topic(boot, settings.topic(DEAD_LETTERS), lambda r: len(r) >= 1)
    (record,) = dead
    assert dict(record.headers)[DEAD_LETTER_HEADERS.reason] == (
        b"AlertRaised does not belong on the clinical-events topic"
    )
