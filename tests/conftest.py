"""Shared fixtures. Integration and end-to-end tests need the real Kafka broker and PostgreSQL
that `scripts/test` starts; without them they fail (they are never skipped)."""

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from services.demo.databases import scratch_database
from shared.settings import Settings
from tests.support import SENDERS_FILE, USERS_FILE


def _reachable(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    if not _reachable(bootstrap.split(",")[0]):
        pytest.fail(f"Kafka is not reachable at {bootstrap}: run scripts/test, which starts it")
    return bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.fail("DATABASE_URL must point at PostgreSQL: run scripts/test, which starts it")
    return url


@pytest.fixture(scope="session")
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database for this test session, dropped afterwards."""
    async with scratch_database(postgres_url, "safetymon_test") as url:
        yield url


@pytest.fixture
def namespace() -> str:
    """Topic and consumer-group prefix of one test: tests never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(kafka_bootstrap: str, database_url: str, namespace: str) -> Settings:
    return Settings(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        DATABASE_URL=database_url,
        TOPIC_NAMESPACE=namespace,
        TOPIC_PARTITIONS=3,
        ALERT_EMAIL_RECIPIENTS="desk@example.org,physician@example.org",
        SMTP_PORT=1,  # replaced by tests that run a mail sink
        USERS_FILE=USERS_FILE,
        SESSION_SECRET="test-session-secret-" + uuid.uuid4().hex,
        SESSION_COOKIE_SECURE=False,
        INGEST_SENDERS_FILE=SENDERS_FILE,
    )
