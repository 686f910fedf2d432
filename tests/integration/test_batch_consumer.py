"""A batch consumer (subscribe_batch) against the real broker: a batch whose flush fails for its
content is taken again one message at a time, so the one message at fault is dead-lettered with
the error and every other message of the batch is flushed, none lost (some more than once:
delivery is at least once, which is why every handler is idempotent by event id)."""

import asyncio

import pytest

from services.common import consumer
from services.common.consumer import subscribe_batch
from services.ops.dlq import read_dead_letters
from shared.events import Envelope
from shared.kafka import broker_running, ensure_topics, make_broker
from shared.settings import Settings
from shared.topics import CLINICAL_EVENTS, DEAD_LETTERS
from tests.support import eventually, produce_events, read_topic
from tests.unit.factories import lab

pytestmark = pytest.mark.integration
FAULTY = "GZ01-013"  # a subject whose event the store below cannot take


class Store:
    """Stands for a projection with a defect meeting one subject's events."""

    def __init__(self) -> None:
        self.staged: list[Envelope] = []
        self.stored: list[Envelope] = []
        self.flushes = 0

    async def stage(self, event: Envelope, partition: int, offset: int, raw: bytes) -> None:
        self.staged.append(event)

    async def flush(self) -> None:
        self.flushes += 1
        if any(event.subject_id == FAULTY for event in self.staged):
            raise ValueError("constraint violated")
        self.stored += self.staged
        self.staged = []

    def discard(self) -> None:
        self.staged = []


async def test_a_batch_failing_as_a_whole_parks_only_the_message_at_fault(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "RETRY_PAUSE_S", 0.05)
    topic = settings.topic(CLINICAL_EVENTS)
    subjects = [f"GZ01-{n:03d}" for n in range(1, 25)]  # GZ01-013 among them
    events = [lab("ANC", 2.5, subject_id=s, source_message_id=s) for s in subjects]
    await ensure_topics(settings)
    await produce_events(settings.kafka_bootstrap_servers, topic, events)
    store, broker = Store(), make_broker(settings, client_id="batch-test")
    subscribe_batch(broker, settings, "batch-test", topic, store)

    async with broker_running(settings, broker):
        others = {s for s in subjects if s != FAULTY}
        await eventually(lambda: {e.subject_id for e in store.stored} == others, 30)
        await read_topic(
            settings.kafka_bootstrap_servers, settings.topic(DEAD_LETTERS), lambda r: len(r) == 1
        )
        await asyncio.sleep(0.5)  # nothing more arrives

    assert {e.subject_id for e in store.stored} == others
    (parked,) = await read_dead_letters(settings)
    assert parked.key == FAULTY and parked.service == "batch-test"
    assert parked.reason == "failed 5 times: ValueError('constraint violated')"
    assert store.flushes > 5  # the batch, then its messages one at a time
