"""A subject's events read back from the log (the grader's explain, the desk's timeline, `safetymon
explain`) come from the one partition its key puts them in, whichever of the project's producers
published them, and are exactly that subject's, in order."""

import pytest

from shared.events import Envelope, decode_event
from shared.kafka import (
    broker_running,
    make_broker,
    make_producer,
    partition_of_key,
    publish_events,
    read_subject_events,
    read_to_end,
    send_events,
)
from shared.settings import Settings
from shared.topics import CLINICAL_EVENTS
from tests.unit.factories import enrolment, lab

pytestmark = pytest.mark.integration
SUBJECTS = [f"GZ01-{n:03d}" for n in range(601, 625)]


def history(subject: str) -> list[Envelope]:
    return [
        enrolment(subject, source_message_id=f"{subject}-enrolment"),
        lab("ANC", 2.5, subject_id=subject, cycle=1, day=1, source_message_id=f"{subject}-c1"),
        lab("ANC", 0.9, subject_id=subject, cycle=2, day=1, source_message_id=f"{subject}-c2"),
    ]


async def test_each_subjects_events_are_read_from_its_keys_partition_in_order(
    settings: Settings,
) -> None:
    settings = settings.model_copy(update={"topic_partitions": 6})
    topic = settings.topic(CLINICAL_EVENTS)
    through_faststream, through_aiokafka = SUBJECTS[:12], SUBJECTS[12:]
    broker = make_broker(settings, client_id="test-ingest")
    async with broker_running(settings, broker):  # creates the topics (6 partitions)
        for subject in through_faststream:  # how ingest publishes
            await publish_events(broker, topic, history(subject))
    producer = make_producer(settings, client_id="test-grader")
    await producer.start()
    try:
        for subject in through_aiokafka:  # how the grader publishes
            await send_events(producer, topic, history(subject))
    finally:
        await producer.stop()

    landed = {
        record.key.decode(): record.partition
        async for batch in read_to_end(settings, topic)
        for record in batch
    }
    assert len(set(landed.values())) > 1  # spread over partitions: the choice matters
    for subject in SUBJECTS:
        assert partition_of_key(subject.encode(), list(range(6))) == landed[subject]
        read = [decode_event(raw) for raw in await read_subject_events(settings, topic, subject)]
        assert [e.event_id for e in read] == [e.event_id for e in history(subject)]
