"""Helpers for tests that talk to the real broker: run an app with its lifespan, read topics."""

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from services.common.net import free_port
from services.demo.processes import REPO_ROOT
from shared.events import Envelope, decode_event, encode_event


@asynccontextmanager
async def running(
    app: FastAPI, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app started as a server would start it (lifespan: broker, consumers), with a client
    sending `headers` (e.g. a user's bearer token) on every request."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://app", headers=headers
        ) as client:
            yield client


async def infra(script: str, command: str, env: dict[str, str] | None = None) -> float:
    """`scripts/kafka` or `scripts/postgres` start|stop|reset, with `env` added to the
    environment (in a thread: the clients and the checks of this process go on meanwhile); the
    seconds it took."""
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(REPO_ROOT / "scripts" / script), command],
        capture_output=True,
        text=True,
        env=os.environ | (env or {}),
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{script} {command} failed: {result.stderr[-2000:]}")
    return time.monotonic() - started


@asynccontextmanager
async def private_kafka(
    name: str, properties: str = "", **env: str
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A single-node broker of the caller's own, wiped and deleted on exit: scripts/kafka with
    KAFKA_HOME=.local/kafka-<name>-<pid>, free ports and the shared broker's jars. `properties`
    override the template's (KAFKA_EXTRA_PROPERTIES, same @...@ placeholders); `env` goes to
    scripts/kafka as well (KAFKA_FORMAT_ARGS, KAFKA_OPTS). Yields (bootstrap, the environment
    that stops and starts it with scripts/kafka). A broker that does not start raises."""
    # .local/kafka-<name>-<pid>: another session may run the same test at the same time
    home = REPO_ROOT / ".local" / f"kafka-{name}-{os.getpid()}"
    home.mkdir(parents=True, exist_ok=True)
    shared_lib = Path(os.environ.get("KAFKA_HOME", REPO_ROOT / ".local" / "kafka")) / "lib"
    if not (home / "lib").exists() and shared_lib.is_dir():
        (home / "lib").symlink_to(shared_lib.resolve())  # no second download
    env = env | {
        "KAFKA_HOME": str(home),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    if properties:
        (home / "extra.properties").write_text(properties)
        env["KAFKA_EXTRA_PROPERTIES"] = str(home / "extra.properties")
    bootstrap = f"127.0.0.1:{env['KAFKA_PORT']}"
    try:
        took = await infra("kafka", "start", env)
        print(f"a Kafka broker of {name}'s own on {bootstrap} ({took:.1f} s)")
        yield bootstrap, env
    finally:
        # reset also stops a broker that started but never became ready
        await asyncio.shield(infra("kafka", "reset", env))
        shutil.rmtree(home, ignore_errors=True)


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[ConsumerRecord]], bool],
    timeout_s: float = 20.0,
) -> list[ConsumerRecord]:
    """Every record of `topic` from the start, until `until(records)` holds or time runs out."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


def events_of(records: list[ConsumerRecord]) -> list[Envelope]:
    return [decode_event(record.value) for record in records]


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Raw (key, value) records, as any producer might send them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, topic: str, events: list[Envelope]) -> None:
    await produce(bootstrap, topic, [(e.subject_id.encode(), encode_event(e)) for e in events])


async def eventually(check: Callable[[], object], timeout_s: float = 10.0) -> object:
    """Poll an async or sync check until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


# The published throwaway tokens of deploy/users.example.yaml (local use and tests only).
USERS_FILE = str(Path(__file__).resolve().parents[1] / "deploy" / "users.example.yaml")
PHYSICIAN = {"Authorization": "Bearer local-only-token-safety-physician-01-not-for-production"}
PHYSICIAN_2 = {"Authorization": "Bearer local-only-token-safety-physician-02-not-for-production"}
VIEWER = {"Authorization": "Bearer local-only-token-viewer-01-not-for-production"}
SITE_GZ01 = {"Authorization": "Bearer local-only-token-site-user-gz01-not-for-production"}
# A sending system allowed to submit for every site (deploy/senders.example.yaml), for ingest.
SENDERS_FILE = str(Path(__file__).resolve().parents[1] / "deploy" / "senders.example.yaml")
INGEST_TOKEN = "local-only-token-sender-edc-not-for-production"
INGEST_AUTH = {"Authorization": f"Bearer {INGEST_TOKEN}"}
# Senders of one site each (GZ01, SH02), for the site-scope tests.
LIS_GZ01 = {"Authorization": "Bearer local-only-token-sender-lis-gz01-not-for-production"}
LIS_SH02 = {"Authorization": "Bearer local-only-token-sender-lis-sh02-not-for-production"}


# Headless-browser tests: Debian's Chromium driven by playwright-core from tests/e2e/browser.
BROWSER_DIR = Path(__file__).resolve().parent / "e2e" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def browser_ready() -> None:
    """Fail (never skip) with what to do when the browser or its driver is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: scripts/test installs it "
            "(apt-get install -y chromium); set CHROMIUM to use another binary"
        )
    if shutil.which("node") is None:
        pytest.fail(f"node not found: the browser tests run the scripts in {BROWSER_DIR}")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            f"playwright-core not installed in {BROWSER_DIR}: scripts/test runs npm ci there"
        )
