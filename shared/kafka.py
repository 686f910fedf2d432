"""Kafka plumbing shared by the services: broker factory, topic creation, publishing events."""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from ssl import SSLContext
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import REGISTRY

from shared.events import Envelope, encode_event
from shared.metrics import CONSUMER_LAG
from shared.settings import Settings
from shared.topics import ALL_TOPICS, DEAD_LETTER_HEADERS, DEAD_LETTERS, TOPIC_CONFIGS

log = logging.getLogger(__name__)


_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_security(settings: Settings) -> BaseSecurity:
    """How to reach the brokers, from KAFKA_SECURITY_PROTOCOL and friends (checked complete by
    Settings): FastStream's security object, from which every other client's arguments are
    derived too (`kafka_client_kwargs`), so the broker and the admin and reader clients can
    never connect differently."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        files = (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        context = _ssl_context(*(None if f is None else str(f) for f in files))
    if not protocol.startswith("SASL_"):
        return BaseSecurity(ssl_context=context)
    password = settings.kafka_sasl_password
    return _SASL[settings.kafka_sasl_mechanism](
        username=settings.kafka_sasl_username or "",
        password=password.get_secret_value() if password else "",
        ssl_context=context,
    )


@functools.cache
def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None) -> SSLContext:
    """One TLS context per set of files for the process: the files are read (and a bad one
    refused) on first use, at start, not on each of the many short-lived admin clients.
    Rotated certificates take effect on restart."""
    return create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile)


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for any aiokafka client (AIOKafkaAdminClient, AIOKafkaConsumer,
    AIOKafkaProducer): the bootstrap servers and the security settings, exactly as the
    FastStream broker gets them."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **parse_security(kafka_security(settings)),
    }


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    """A broker whose producer only reports success once every in-sync replica has the record,
    and never writes a retried record twice (idempotent producer)."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=kafka_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        graceful_timeout=15.0,
        # A plain logger: its lines go through the service's root handler (JSON), not
        # FastStream's own text handler.
        logger=logging.getLogger("faststream.broker"),
        log_level=logging.INFO,
        # FastStream's own per-topic counters and processing-time histograms
        # (faststream_received_messages_total, faststream_published_messages_total, ...).
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


async def ensure_topics(settings: Settings, timeout_s: float = 60.0) -> list[str]:
    """Create the project's topics if missing (partitioned; keyed by subject id). Returns the
    names created. Waits for the broker to answer, up to `timeout_s`."""
    wanted = [settings.topic(name) for name in ALL_TOPICS]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings), request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [name for name in wanted if name not in existing]
            if missing:
                await _create(admin, missing, settings)
            return missing
        except KafkaConnectionError as error:
            if refused := await _login_refused(settings):
                raise refused from error  # no outage to wait out: the login will not change
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


_LOGIN_REFUSED = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    AuthenticationFailedError,
)


async def _login_refused(settings: Settings, timeout_s: float = 5.0) -> KafkaError | None:
    """Why the brokers refuse the SASL login (wrong password, unknown user, mechanism not
    enabled), or None if they take it or cannot be asked. aiokafka's clients report a refused
    login only as "Unable to bootstrap", as they report an unreachable broker (the reason goes
    to their log): so a bootstrap server is asked directly."""
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return None
    security = parse_security(kafka_security(settings))
    for host, port, _ in collect_hosts(settings.kafka_bootstrap_servers, randomize=False):
        try:
            async with asyncio.timeout(timeout_s):
                connection = await create_conn(
                    host, port, request_timeout_ms=int(timeout_s * 1000), **security
                )
        except _LOGIN_REFUSED as error:
            return error
        except (OSError, KafkaError, TimeoutError):
            continue  # this one is unreachable: another may answer
        connection.close()
        return None
    return None


async def _create(admin: AIOKafkaAdminClient, names: list[str], settings: Settings) -> None:
    topics = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs=TOPIC_CONFIGS.get(name.removeprefix(settings.topic_namespace), {}),
        )
        for name in names
    ]
    response = await admin.create_topics(topics)
    # aiokafka reports per-topic errors in the response instead of raising.
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        if code not in (0, TopicAlreadyExistsError.errno):  # another service created it first
            raise for_code(code)(f"cannot create topic {name}: {topic_error[2:]}")
    log.info("created topics %s", names)


async def publish_events(
    broker: KafkaBroker, topic: str, events: Sequence[Envelope], timeout_s: float = 30.0
) -> None:
    """Publish keyed by subject id and return once the broker acknowledged every one (acks=all).

    Records are enqueued in order first, so one subject's events keep their order in its partition,
    and the acknowledgements are awaited together."""
    pending = [
        await broker.publish(
            encode_event(event),
            topic=topic,
            key=event.subject_id.encode(),
            headers={"event_type": event.event_type},
            no_confirm=True,
        )
        for event in events
    ]
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout_s)


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """A plain producer with the broker's guarantees (acks=all, idempotent), for a service that
    publishes many events per message consumed: FastStream's publish costs about three times
    aiokafka's own per record (measured), which the grader pays for every grade it derives."""
    return AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
    )


async def send_events(
    producer: AIOKafkaProducer, topic: str, events: Sequence[Envelope], timeout_s: float = 30.0
) -> None:
    """As publish_events (keyed by subject id, in order, the acknowledgements awaited
    together), through a plain producer."""
    pending = [
        await producer.send(
            topic,
            encode_event(event),
            key=event.subject_id.encode(),
            headers=[("event_type", event.event_type.encode())],
        )
        for event in events
    ]
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending), timeout_s)


async def publish_dead_letter(
    broker: KafkaBroker, settings: Settings, record: ConsumerRecord, group: str, reason: str
) -> None:
    """Park a record the consumer cannot take, with the reason and where it came from."""
    h = DEAD_LETTER_HEADERS
    await broker.publish(
        record.value or b"",
        topic=settings.topic(DEAD_LETTERS),
        key=record.key,
        headers={
            h.reason: reason[:1000],
            h.source_topic: record.topic,
            h.source_partition: str(record.partition),
            h.source_offset: str(record.offset),
            h.consumer_group: group,
        },
    )
    log.warning(
        "dead letter from %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason
    )


@asynccontextmanager
async def broker_running(
    settings: Settings, broker: KafkaBroker, lag_of: dict[str, list[str]] | None = None
) -> AsyncIterator[None]:
    """Topics exist, the broker's producer and subscribers run, and the consumer lag of each
    service in `lag_of` (consumer name -> its topics) is measured; on exit, in-flight messages
    are drained and offsets committed before the connection closes."""
    await ensure_topics(settings)
    await broker.start()
    watchers = [
        asyncio.create_task(watch_consumer_lag(settings, service, topics))
        for service, topics in (lag_of or {}).items()
    ]
    try:
        yield
    finally:
        for watcher in watchers:
            watcher.cancel()
        await broker.stop()


async def _committed_offsets(
    settings: Settings, group: str, timeout_s: float = 60.0
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets. On a new broker the group coordinator (and its
    __consumer_offsets topic) comes up with the first group: wait for it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
        try:
            await admin.start()
            return await admin.list_consumer_group_offsets(group)
        except KafkaError as error:
            if not error.retriable or asyncio.get_running_loop().time() > deadline:
                raise
            log.info("waiting for the group coordinator of %s: %r", group, error)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)


def _log_reader(settings: Settings) -> AIOKafkaConsumer:
    """A reader outside any consumer group, committing nothing: for reading the log back."""
    return AIOKafkaConsumer(
        **kafka_client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def read_to_end(
    settings: Settings, topic: str, partition: int | None = None
) -> AsyncIterator[list[ConsumerRecord]]:
    """Every record of `topic` (of that one `partition`) up to its end at the time of the call,
    in batches; within a partition in log order."""
    numbers = await _partitions_of(settings, topic) if partition is None else [partition]
    partitions = [TopicPartition(topic, p) for p in numbers]
    reader = _log_reader(settings)
    await reader.start()
    try:
        reader.assign(partitions)
        ends = await reader.end_offsets(partitions)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        if remaining:
            await reader.seek_to_beginning(*remaining)
        while remaining:
            batches = await reader.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                yield [r for r in records if r.offset < remaining[tp]]
                if await reader.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        await reader.stop()


async def read_subject_events(settings: Settings, topic: str, subject_id: str) -> list[bytes]:
    """Every record of one subject on `topic`, in log order, up to the end at the time of the call.
    Records are keyed by subject id, so they all sit in the partition the key gives: only that
    one is read (a whole topic is every subject's)."""
    key = subject_id.encode()
    partition = partition_of_key(key, await _partitions_of(settings, topic))
    return [
        record.value
        async for batch in read_to_end(settings, topic, partition)
        for record in batch
        if record.key == key
    ]


def partition_of_key(key: bytes, partitions: list[int]) -> int:
    """The partition a record keyed `key` goes to: Kafka's default partitioner (murmur2 of the
    key, as the Java clients and aiokafka's producers, which publish every event here, use)."""
    return _KEYED(key, partitions, partitions)


_KEYED = DefaultPartitioner()


async def _partitions_of(settings: Settings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description["error_code"]:
        raise for_code(description["error_code"])(f"cannot read topic {topic}")
    return sorted(p["partition"] for p in description["partitions"])


async def consumer_lag(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Per partition of `topic`: messages beyond `group`'s committed offset (all of them where
    the group has committed nothing yet)."""
    partitions = [TopicPartition(topic, p) for p in await _partitions_of(settings, topic)]
    committed = await _committed_offsets(settings, group, timeout_s=5.0)
    reader = _log_reader(settings)
    await reader.start()
    try:
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
    return {
        tp.partition: max(0, end - (committed[tp].offset if tp in committed else 0))
        for tp, end in ends.items()
    }


async def watch_consumer_lag(
    settings: Settings, service: str, topics: list[str], every_s: float = 15.0
) -> None:
    """Keep safetymon_consumer_lag_messages current for the service's group, until cancelled;
    a failed measurement is logged and tried again at the next tick."""
    group = settings.consumer_group(service)
    while True:
        for topic in topics:
            try:
                lags = await consumer_lag(settings, group, topic)
            except Exception:
                log.warning("consumer lag of %s on %s not measured", group, topic, exc_info=True)
                continue
            for partition, lag in lags.items():
                CONSUMER_LAG.labels(service, topic, str(partition)).set(lag)
        await asyncio.sleep(every_s)


async def read_partition(
    settings: Settings, topic: str, partition: int, end_offset: int
) -> AsyncIterator[list[ConsumerRecord]]:
    """The records of one partition from its start up to (not including) `end_offset`."""
    tp = TopicPartition(topic, partition)
    reader = _log_reader(settings)
    await reader.start()
    try:
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        while end_offset > 0 and await reader.position(tp) < end_offset:
            batch = await reader.getmany(tp, timeout_ms=1000, max_records=5000)
            yield [r for r in batch.get(tp, []) if r.offset < end_offset]
    finally:
        await reader.stop()


async def dead_lettered_offsets(
    settings: Settings, group: str, topic: str, partition: int
) -> set[int]:
    """Offsets of `topic`'s `partition` that `group` parked on the dead-letter topic: messages
    it never took, which a rebuild of its state must not take either (a replayed copy, at a
    new offset, is taken when it comes)."""
    h = DEAD_LETTER_HEADERS
    wanted = {h.consumer_group: group, h.source_topic: topic, h.source_partition: str(partition)}
    offsets = set()
    async for records in read_to_end(settings, settings.topic(DEAD_LETTERS)):
        for record in records:
            headers = {key: value.decode() for key, value in record.headers or ()}
            if all(headers.get(key) == value for key, value in wanted.items()):
                offsets.add(int(headers[h.source_offset]))
    return offsets
