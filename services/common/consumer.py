"""The one way a service consumes safetymon events from Kafka: one message at a time
(`subscribe`), or, where throughput matters, in batches (`subscribe_batch`) with the same
guarantees.

Offsets are committed only after the handler's outputs are acknowledged by the broker
(at-least-once; outputs have deterministic ids, so a redelivery repeats nothing downstream).
A message that cannot be decoded, or that the handler rejects as invalid, goes to the dead-letter
topic with the reason, and the consumer moves on. A transient failure (broker or database
unreachable) rewinds to the same message after a pause, as long as it lasts. Any other failure (a
defect meeting this message) is retried a few times, then the message is dead-lettered with the
error, so one message never stops a partition's other subjects.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from services.common.logs import event_context
from shared.events import Envelope, EventDecodeError, decode_event
from shared.kafka import publish_dead_letter
from shared.metrics import CONSUMED_MESSAGES, DEAD_LETTERS
from shared.settings import Settings

log = logging.getLogger(__name__)
RETRY_PAUSE_S = 1.0
MAX_FAILURES = 5  # of a message failing for a reason other than an unreachable dependency
TRANSIENT = (KafkaError, OSError, OperationalError, InterfaceError, TimeoutError)
# PostgreSQL going away or not back yet, which SQLAlchemy's asyncpg dialect reports as a plain
# DBAPIError: a connection exception (SQLSTATE class 08), shutting down (57P01 administrator,
# 57P02 crash), starting up (57P03), too many connections (53300).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")

EventHandler = Callable[[Envelope], Awaitable[None]]
# A handler that also needs where the message sits (partition, offset) in its topic.
PositionedHandler = Callable[[Envelope, int, int], Awaitable[None]]


def unreachable(error: BaseException) -> bool:
    """The failure is a dependency (broker, database) out of reach, not this message's fault:
    retried for as long as it lasts, never counted towards dead-lettering the message."""
    if isinstance(error, TRANSIENT):
        return True
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or ""
        return error.connection_invalidated or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    return False


class RejectedEvent(ValueError):
    """The event is well-formed but cannot be processed; the message says why."""


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    service: str,
    topic: str,
    handle: EventHandler | None = None,
    *,
    positioned: PositionedHandler | None = None,
) -> None:
    """Consume `topic` in `service`'s group with `handle(event)` (or
    `positioned(event, partition, offset)`): commit after it returns, retry what fails for a
    reason that passes, dead-letter what can never be taken."""
    group = settings.consumer_group(service)

    failures: dict[tuple[int, int], int] = {}  # (partition, offset) -> failed attempts

    async def dead_letter(message: KafkaMessage, reason: str, kind: str) -> None:
        await publish_dead_letter(broker, settings, message.raw_message, group, reason)
        DEAD_LETTERS.labels(service, kind).inc()
        CONSUMED_MESSAGES.labels(service, "dead_letter").inc()

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=settings.consumer_max_poll_interval_s * 1000,
    )
    async def consume(message: KafkaMessage) -> None:
        record = message.raw_message
        position = (record.partition, record.offset)
        try:
            event = decode_event(message.body)
            with event_context(event):
                if positioned is not None:
                    await positioned(event, record.partition, record.offset)
                elif handle is not None:
                    await handle(event)
                log.info("%s: handled %s", service, event.event_type)
        except EventDecodeError as error:
            await dead_letter(message, str(error), "undecodable")
            return
        except RejectedEvent as error:
            await dead_letter(message, str(error), "rejected")
            return
        except Exception as error:
            if unreachable(error):
                CONSUMED_MESSAGES.labels(service, "retry").inc()
                log.exception("%s: a dependency is unreachable; retrying the same message", service)
                await asyncio.sleep(RETRY_PAUSE_S)
                raise
            failures[position] = failures.get(position, 0) + 1
            if failures[position] >= MAX_FAILURES:
                log.exception(
                    "%s: giving up on %s after %d failures", service, position, MAX_FAILURES
                )
                failures.pop(position)
                await dead_letter(
                    message, f"failed {MAX_FAILURES} times: {error!r}"[:1000], "failed"
                )
                return
            CONSUMED_MESSAGES.labels(service, "retry").inc()
            log.exception("%s: processing failed, will retry the same message", service)
            await asyncio.sleep(RETRY_PAUSE_S)
            raise
        failures.pop(position, None)
        CONSUMED_MESSAGES.labels(service, "processed").inc()


class _Parked(Exception):
    """A message of the batch was given up on and dead-lettered: take the batch again."""


def _records_only(_: object) -> None:
    """FastStream would decode each body as JSON for a handler argument; the handler reads the
    records themselves (message.raw_message), so that work is skipped."""


class BatchHandler(Protocol):
    """Takes a batch's events one by one, then makes their outputs durable together."""

    async def stage(self, event: Envelope, partition: int, offset: int, raw: bytes) -> None:
        """Work out the event's outputs, keeping them (and any state change) aside; raise
        RejectedEvent for an event that can never be taken. `raw`: the message's value, the
        event as encoded."""

    async def flush(self) -> None:
        """Publish what was staged and return once the broker acknowledged it; then what was
        staged is the current state."""

    def discard(self) -> None:
        """Forget what was staged (the batch is delivered again)."""


def subscribe_batch(
    broker: KafkaBroker,
    settings: Settings,
    service: str,
    topic: str,
    handler: BatchHandler,
    *,
    max_records: int = 500,
    wait_ms: int = 10,
) -> None:
    """Consume `topic` in `service`'s group in batches of up to `max_records`: stage each event,
    flush, then commit the batch (the handler logs what is worth a line per event: a line per
    event costs more than grading it). One round trip to the broker per batch instead of one per
    message is what makes a consumer keep up with a burst; a batch takes whatever the fetch
    holds, so a lone message waits at most `wait_ms` more than it would alone.

    Failures are as in `subscribe`, per message: an undecodable or rejected message is
    dead-lettered at once and skipped; an unreachable dependency rewinds the whole batch
    (nothing of it committed or kept) and retries it; a message failing for any other reason
    rewinds the batch too, and after MAX_FAILURES it is dead-lettered and the rest goes on. A
    flush failing for another reason than an unreachable dependency cannot name its message:
    the batch is then taken again one message at a time, so the failing one is found."""
    group = settings.consumer_group(service)
    failures: dict[tuple[int, int], int] = {}
    parked: set[tuple[int, int]] = set()  # dead-lettered, in a batch not yet committed
    isolate = False  # after a batch's flush failed for its content: one message at a time

    async def dead_letter(record: ConsumerRecord, reason: str, kind: str) -> None:
        await publish_dead_letter(broker, settings, record, group, reason)
        parked.add((record.partition, record.offset))
        DEAD_LETTERS.labels(service, kind).inc()
        CONSUMED_MESSAGES.labels(service, "dead_letter").inc()

    async def stage(record: ConsumerRecord) -> bool:
        """Whether the record was staged (else dead-lettered)."""
        raw = record.value or b""
        try:
            event = decode_event(raw)
        except EventDecodeError as error:
            await dead_letter(record, str(error), "undecodable")
            return False
        try:
            await handler.stage(event, record.partition, record.offset, raw)
        except RejectedEvent as error:
            with event_context(event):
                await dead_letter(record, str(error), "rejected")
            return False
        return True

    async def failed(record: ConsumerRecord | None, error: Exception) -> None:
        """Rewind the batch after a pause (by raising), or dead-letter a message that keeps
        failing and go on with the rest."""
        handler.discard()
        if unreachable(error) or record is None:
            CONSUMED_MESSAGES.labels(service, "retry").inc()
            log.exception("%s: a dependency is unreachable or the batch failed; retrying", service)
        else:
            position = (record.partition, record.offset)
            failures[position] = failures.get(position, 0) + 1
            if failures[position] >= MAX_FAILURES:
                failures.pop(position)
                log.exception(
                    "%s: giving up on %s after %d failures", service, position, MAX_FAILURES
                )
                reason = f"failed {MAX_FAILURES} times: {error!r}"[:1000]
                await dead_letter(record, reason, "failed")
                # The batch again without it, at once and in this call: rewinding would leave
                # the dead letter's offset uncommitted until then, and a stop in between would
                # park it a second time after the restart.
                raise _Parked from error
            else:
                CONSUMED_MESSAGES.labels(service, "retry").inc()
                log.exception("%s: processing %s failed; retrying the batch", service, position)
        await asyncio.sleep(RETRY_PAUSE_S)

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        max_poll_interval_ms=settings.consumer_max_poll_interval_s * 1000,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=wait_ms,
        decoder=_records_only,
    )
    async def consume(message: KafkaMessage) -> None:
        nonlocal isolate
        records: tuple[ConsumerRecord, ...] = message.raw_message
        while True:
            try:
                if isolate:
                    staged = sum([await take((record,)) for record in records])
                else:
                    staged = await take(records)
                break
            except _Parked:
                continue  # a message given up on is dead-lettered: the rest, now
        isolate = False
        for record in records:
            position = (record.partition, record.offset)
            parked.discard(position)
            failures.pop(position, None)
        CONSUMED_MESSAGES.labels(service, "processed").inc(staged)
        log.info("%s: handled a batch of %d (%d staged)", service, len(records), staged)

    async def take(records: tuple[ConsumerRecord, ...]) -> int:
        """Stage the records and flush them; how many were staged."""
        staged = 0
        for record in records:
            if (record.partition, record.offset) in parked:
                continue  # dead-lettered by an earlier attempt at this batch
            try:
                staged += await stage(record)
            except Exception as error:
                await failed(record, error)
                raise
        try:
            await handler.flush()
        except Exception as error:
            if len(records) == 1:
                await failed(records[0], error)  # counts towards dead-lettering it
            else:
                # Which message the flush could not take is unknown: the batch goes again
                # one message at a time (unless a dependency was merely unreachable).
                nonlocal isolate
                isolate = not unreachable(error)
                await failed(None, error)
            raise
        return staged
