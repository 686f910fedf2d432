"""The Kafka security settings over SASL/SCRAM against a real broker: a broker of the test's own
that takes SCRAM-SHA-512 logins only (its user created when its storage is formatted). With
KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, KAFKA_SASL_MECHANISM=SCRAM-SHA-512 and the user's login,
every kind of client the services use connects: the admin client (ensure_topics), FastStream's
producer and group consumer (make_broker, the services' subscribe), the plain aiokafka reader
(read_to_end, consumer_lag), and ingest in process. A wrong password is refused at once as an
authentication failure, not waited out as an outage."""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.errors import SaslAuthenticationFailed

from services.common.consumer import subscribe
from services.ingest.app import create_app
from shared.events import Envelope, LabResultReported, decode_event
from shared.kafka import (
    consumer_lag,
    ensure_topics,
    make_broker,
    publish_events,
    read_subject_events,
    read_to_end,
)
from shared.settings import Settings
from shared.topics import ALL_TOPICS, CLINICAL_EVENTS
from tests.integration.test_ingest_to_kafka import lab_body
from tests.support import INGEST_AUTH, SENDERS_FILE, eventually, private_kafka, running
from tests.unit.factories import lab

pytestmark = pytest.mark.integration

USER = "safetymon-sasl-test"
PASSWORD = f"scram-{uuid.uuid4().hex}"  # fresh per run: nothing but this test knows it
WRONG_PASSWORD = "not-the-password"

# Clients and the broker itself (inter-broker) log in with SCRAM-SHA-512 on the one client
# listener; the controller listener stays PLAINTEXT (loopback, the node talking to itself).
SCRAM_ONLY = f"""
listeners=SASL_PLAINTEXT://127.0.0.1:@KAFKA_PORT@,CONTROLLER://127.0.0.1:@CONTROLLER_PORT@
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:@KAFKA_PORT@
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{USER}" password="{PASSWORD}";
"""


@pytest.fixture(scope="module")
async def scram_bootstrap() -> AsyncIterator[str]:
    """The broker, shared by this module's tests; a failure to start it fails them."""
    async with private_kafka(
        "sasl",
        SCRAM_ONLY,
        # The user exists before the broker first starts (KRaft: a SCRAM record at format).
        KAFKA_FORMAT_ARGS=f"--add-scram SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
        # C1 only: a throwaway broker starts sooner and never runs long enough to need C2.
        KAFKA_OPTS="-XX:TieredStopAtLevel=1",
    ) as (bootstrap, _):
        yield bootstrap


def scram_settings(bootstrap: str, namespace: str, password: str = PASSWORD) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME=USER,
        KAFKA_SASL_PASSWORD=password,
        TOPIC_NAMESPACE=namespace,
        TOPIC_PARTITIONS=2,
        INGEST_SENDERS_FILE=SENDERS_FILE,
        MLLP_PORT=0,  # any free port: ingest's MLLP listener is not under test
    )


async def test_every_kind_of_client_connects_with_the_scram_login(
    scram_bootstrap: str, namespace: str
) -> None:
    settings = scram_settings(scram_bootstrap, namespace)
    topic, service = settings.topic(CLINICAL_EVENTS), "sasl-test"
    event = lab("ANC", 0.9)
    handled: asyncio.Queue[Envelope] = asyncio.Queue()
    async with asyncio.timeout(30):
        created = await ensure_topics(settings, timeout_s=10)  # admin client
        assert sorted(created) == sorted(settings.topic(name) for name in ALL_TOPICS)

        broker = make_broker(settings, client_id=service)
        subscribe(broker, settings, service, topic, handled.put)
        await broker.start()
        try:
            await publish_events(broker, topic, [event])  # FastStream's producer, acks=all
            assert (await handled.get()).event_id == event.event_id  # its group consumer
            group = settings.consumer_group(service)

            async def committed() -> bool:  # via the admin client and a plain reader
                return not any((await consumer_lag(settings, group, topic)).values())

            assert await eventually(committed, timeout_s=10)
        finally:
            await broker.stop()

        records = [record async for batch in read_to_end(settings, topic) for record in batch]
    assert [(r.key, decode_event(r.value).event_id) for r in records] == [
        (b"GZ01-005", event.event_id)
    ]


async def test_ingest_publishes_a_lab_over_scram(scram_bootstrap: str, namespace: str) -> None:
    settings = scram_settings(scram_bootstrap, namespace)
    async with asyncio.timeout(30):
        async with running(create_app(settings), INGEST_AUTH) as client:
            assert (await client.get("/health")).status_code == 200
            response = await client.post("/v1/labs", json=lab_body("GZ01-007"))
        assert response.status_code == 202, response.text
        (event_id,) = response.json()["event_ids"]
        (value,) = await read_subject_events(settings, settings.topic(CLINICAL_EVENTS), "GZ01-007")
    event = decode_event(value)
    assert isinstance(event, LabResultReported) and str(event.event_id) == event_id


async def test_a_wrong_password_is_refused_at_once_as_an_authentication_failure(
    scram_bootstrap: str, namespace: str
) -> None:
    wrong = scram_settings(scram_bootstrap, namespace, password=WRONG_PASSWORD)
    started = time.monotonic()
    # ensure_topics waits up to timeout_s for a broker that does not answer; a refused login
    # must not be waited out like that (the outer timeout fails the test if it is).
    with pytest.raises(SaslAuthenticationFailed, match=r"invalid credentials.*SCRAM-SHA-512"):
        async with asyncio.timeout(15):
            await ensure_topics(wrong, timeout_s=60)
    assert time.monotonic() - started < 10

    # Ingest keeps serving (503, retry later) and logs why it cannot publish.
    app = create_app(wrong)  # sets up the root logger: the handler below goes on after it
    warnings = _Remembered()
    logging.getLogger("services.ingest.publisher").addHandler(warnings)
    try:
        async with asyncio.timeout(20), running(app, INGEST_AUTH) as client:
            assert (await client.get("/health")).status_code == 503
            response = await client.post("/v1/labs", json=lab_body("GZ01-008"))
            assert response.status_code == 503 and "Retry-After" in response.headers
    finally:
        logging.getLogger("services.ingest.publisher").removeHandler(warnings)
    assert any("SaslAuthenticationFailed" in line for line in warnings.lines), warnings.lines


class _Remembered(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
