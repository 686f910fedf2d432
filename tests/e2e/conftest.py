"""The live pipeline for end-to-end tests: the four services as processes on the real broker and
PostgreSQL, an SMTP server catching their email, a topic namespace of their own."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from services.demo.databases import scratch_database
from services.demo.processes import Services, service_environment
from services.demo.smtp_sink import SmtpSink
from shared.settings import Settings
from tests.support import USERS_FILE

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Pipeline:
    services: Services
    urls: dict[str, str]
    sink: SmtpSink
    database_url: str
    settings: Settings
    env: dict[str, str]


@asynccontextmanager
async def live_pipeline(
    kafka_bootstrap: str, postgres_url: str, logs: str, **extra_env: str
) -> AsyncIterator[Pipeline]:
    """The services running until the block ends (then stopped with SIGTERM), on a database of
    their own (so one pipeline's read models never see another's events); their logs in
    test-artifacts/<logs>/."""
    async with scratch_database(postgres_url, "safetymon_e2e") as database_url:
        async with _services(kafka_bootstrap, database_url, logs, extra_env) as pipeline:
            yield pipeline


@asynccontextmanager
async def _services(
    kafka_bootstrap: str, database_url: str, logs: str, extra_env: dict[str, str]
) -> AsyncIterator[Pipeline]:
    env = {"ALERT_EMAIL_RECIPIENTS": "safety-desk@example.org"} | extra_env
    namespace = f"{logs}-{time.time_ns()}."
    async with services_running(
        kafka_bootstrap, database_url, namespace, ARTIFACTS / logs, env
    ) as pipeline:
        yield pipeline


@asynccontextmanager
async def services_running(
    kafka_bootstrap: str,
    database_url: str,
    namespace: str,
    log_dir: Path,
    extra_env: dict[str, str],
) -> AsyncIterator[Pipeline]:
    """The four services as processes on the topics of `namespace` and an SMTP server catching
    their email, until the block ends (then stopped with SIGTERM); their logs in `log_dir`."""
    sink = SmtpSink()
    sink.start()
    env = service_environment(
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        namespace=namespace,
        smtp_port=sink.port,
        **(
            {"USERS_FILE": USERS_FILE, "SESSION_SECRET": "test-session-secret-" + "x" * 32}
            | extra_env
        ),
    )
    services = Services(env, log_dir)
    services.start()
    try:
        await services.wait_healthy()
        settings = Settings(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            DATABASE_URL=database_url,
            TOPIC_NAMESPACE=namespace,
        )
        yield Pipeline(services, services.urls, sink, database_url, settings, services.env)
    finally:
        services.stop()
        sink.stop()
