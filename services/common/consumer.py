"""The one way a service consumes safetymon events from Kafka.

Offsets are committed only after the handler's outputs are acknowledged by the broker
(at-least-once; outputs have deterministic ids, so a redelivery repeats nothing downstream).
A message that cannot be decoded, or that the handler rejects as invalid, goes to the dead-letter
topic with the reason, and the consumer moves on. A transient failure (broker or database down)
rewinds to the same message after a pause.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.events import Envelope, EventDecodeError, decode_event
from shared.kafka import publish_dead_letter
from shared.metrics import CONSUMED_MESSAGES, DEAD_LETTERS
from shared.settings import Settings

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 1.0

EventHandler = Callable[[Envelope], Awaitable[None]]


class RejectedEvent(ValueError):
    """The event is well-formed but cannot be processed; the message says why."""


def subscribe(
    broker: KafkaBroker, settings: Settings, service: str, topic: str, handle: EventHandler
) -> None:
    group = settings.consumer_group(service)

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=300_000,
    )
    async def consume(message: KafkaMessage) -> None:
        try:
            event = decode_event(message.body)
            await handle(event)
        except (EventDecodeError, RejectedEvent) as error:
            await publish_dead_letter(broker, settings, message, group, str(error))
            DEAD_LETTERS.labels(service).inc()
            CONSUMED_MESSAGES.labels(service, "dead_letter").inc()
            return
        except Exception:
            CONSUMED_MESSAGES.labels(service, "retry").inc()
            log.exception("%s: processing failed, will retry the same message", service)
            await asyncio.sleep(RETRY_PAUSE_S)
            raise
        CONSUMED_MESSAGES.labels(service, "processed").inc()
