"""Kafka security from the environment: KAFKA_SECURITY_PROTOCOL and friends become the same
client arguments for the FastStream broker and every aiokafka client; incomplete or
contradictory settings are refused when the settings are read (at start)."""

import asyncio
import shutil
import ssl
import subprocess

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

import shared.kafka
from services.common.net import free_port
from shared.kafka import ensure_topics, kafka_client_kwargs, kafka_security, make_broker
from shared.settings import Settings

BOOTSTRAP = "kafka-0.example.org:9093"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate and its key (as a CA file and a client pair)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate (apt-get install openssl)")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "client.pem", directory / "client.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=safetymon-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return {"KAFKA_SSL_CAFILE": str(cert), "KAFKA_SSL_CERTFILE": str(cert),
            "KAFKA_SSL_KEYFILE": str(key)}  # fmt: skip


def settings(**env: object) -> Settings:
    return Settings(KAFKA_BOOTSTRAP_SERVERS=BOOTSTRAP, **env)


LOGIN = {"KAFKA_SASL_USERNAME": "safetymon", "KAFKA_SASL_PASSWORD": "s3cret"}


def test_plaintext_is_the_default() -> None:
    kwargs = kafka_client_kwargs(settings())
    assert kwargs == {
        "bootstrap_servers": BOOTSTRAP,
        "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }
    assert type(kafka_security(settings())) is BaseSecurity


def test_ssl_with_the_system_cas() -> None:
    kwargs = kafka_client_kwargs(settings(KAFKA_SECURITY_PROTOCOL="SSL"))
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in kwargs


def test_ssl_with_a_ca_file_and_a_client_certificate(tls_files: dict[str, str]) -> None:
    kwargs = kafka_client_kwargs(settings(KAFKA_SECURITY_PROTOCOL="SSL", **tls_files))
    context = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SSL"
    assert any(
        dict(item[0] for item in ca["subject"]).get("commonName") == "safetymon-test"
        for ca in context.get_ca_certs()
    )


@pytest.mark.parametrize(
    ("mechanism", "security_class"),
    [("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512), ("PLAIN", SASLPlaintext)],
)
def test_sasl_ssl_per_mechanism(mechanism: str, security_class: type) -> None:
    chosen = settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM=mechanism, **LOGIN)
    assert type(kafka_security(chosen)) is security_class
    kwargs = kafka_client_kwargs(chosen)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == (mechanism, "safetymon")
    assert kwargs["sasl_plain_password"] == "s3cret"


def test_sasl_plaintext_with_scram() -> None:
    kwargs = kafka_client_kwargs(settings(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", **LOGIN))
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert kwargs["ssl_context"] is None
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"  # the default mechanism


async def test_every_client_takes_the_arguments() -> None:
    """The arguments are aiokafka's own: its clients accept them (nothing connects here)."""
    chosen = settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", **LOGIN)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(chosen))
    assert admin._client._security_protocol == "SASL_SSL"
    await admin.close()
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(chosen), group_id=None)
    assert consumer._client._sasl_mechanism == "SCRAM-SHA-512"
    await consumer.stop()
    broker = make_broker(chosen, client_id="test")
    assert broker._connection_kwargs["security_protocol"] == "SASL_SSL"
    assert broker._connection_kwargs["sasl_plain_username"] == "safetymon"


def test_the_password_is_never_printed() -> None:
    chosen = settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", **LOGIN)
    assert "s3cret" not in repr(chosen) and "s3cret" not in str(chosen.model_dump())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "safetymon"},
            "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
        ),
        (LOGIN, "they would be ignored; use SASL_SSL"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN", **LOGIN},
            "sends the password in clear text",
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE",
        ),
    ],
)
def test_incomplete_or_contradictory_settings_are_refused(env: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**env)


def test_ssl_files_need_an_ssl_protocol_and_a_certificate_its_key(
    tls_files: dict[str, str],
) -> None:
    with pytest.raises(ValidationError, match="would be ignored; use SSL or SASL_SSL"):
        settings(**tls_files)
    with pytest.raises(ValidationError, match="go together"):
        settings(KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CERTFILE=tls_files["KAFKA_SSL_CERTFILE"])


def test_the_local_broker_settings_still_work() -> None:
    """What the tests and the demo use: nothing set, plaintext."""
    assert Settings().kafka_security_protocol == "PLAINTEXT"


@pytest.mark.parametrize(
    ("answer", "raised", "timeout_s"),
    [
        (SaslAuthenticationFailed("invalid credentials"), SaslAuthenticationFailed, 60.0),
        (ConnectionRefusedError("nobody there"), KafkaConnectionError, 0.0),
    ],
)
async def test_ensure_topics_stops_waiting_when_the_login_is_refused(
    monkeypatch: pytest.MonkeyPatch, answer: Exception, raised: type, timeout_s: float
) -> None:
    """aiokafka's admin client reports a refused login as "Unable to bootstrap", as it does an
    unreachable broker: ensure_topics asks the broker itself, and raises a refused login at once
    instead of waiting it out (tests/integration/test_kafka_sasl.py: a real broker)."""
    asked: list[dict] = []

    async def broker_answers(host: str, port: int, **kwargs: object) -> None:
        asked.append(kwargs)
        raise answer

    monkeypatch.setattr(shared.kafka, "create_conn", broker_answers)
    nobody = f"127.0.0.1:{free_port()}"  # the admin client's bootstrap fails at once
    chosen = Settings(
        KAFKA_BOOTSTRAP_SERVERS=nobody, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", **LOGIN
    )
    with pytest.raises(raised):
        async with asyncio.timeout(10):
            await ensure_topics(chosen, timeout_s=timeout_s)
    assert asked[0]["sasl_mechanism"] == "SCRAM-SHA-512"
    assert asked[0]["sasl_plain_username"] == "safetymon"


async def test_without_sasl_there_is_no_login_to_ask_about(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("no login to check over PLAINTEXT")

    monkeypatch.setattr(shared.kafka, "create_conn", never)
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(Settings(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"), 0)
