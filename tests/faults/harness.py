"""The machinery of the fault tests: profiles and seed, the live pipeline with a fault-friendly
configuration, clients that post the stream and retry, killing and restarting services, waiting
for the pipeline to settle, checking the guarantees, and the summary line of each test."""

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.db import alerts, create_engine, notifications
from services.demo.databases import scratch_database
from services.demo.processes import REPO_ROOT
from services.dsmb.rebuild import rebuild
from shared.events import EventDecodeError, decode_event
from shared.kafka import consumer_lag, read_to_end
from shared.topics import ALERTS, ALL_TOPICS, ASSESSMENTS, CLINICAL_EVENTS, DEAD_LETTERS
from tests.e2e.conftest import ARTIFACTS, Pipeline, services_running
from tests.e2e.test_live_pipeline import read_model_rows
from tests.faults.stream import (
    ESCALATION_RECIPIENTS,
    RECIPIENTS,
    Expected,
    Group,
    build_stream,
    expected_outcome,
    groups_of,
)
from tests.support import INGEST_AUTH, infra, private_kafka

# Each session's logs in a directory of its own (others may run these tests at the same time):
# test-artifacts/faults/<date>-<time>-<pid>/<scenario>/; the summary lines of every session are
# appended to test-artifacts/faults/summary.jsonl.
RUN_DIR = ARTIFACTS / "faults" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
SUMMARY_FILE = ARTIFACTS / "faults" / "summary.jsonl"
SUMMARY_LINES: list[str] = []  # printed again at the end of the session (conftest)
KEEP_RUNS_S = 24 * 3600  # older sessions' logs are deleted when a new session starts


@dataclass(frozen=True)
class Profile:
    name: str
    subjects: int
    cycles: int
    toxicity: float  # share of subject-cycles with day-1 toxicity written in
    rate: float  # events per second the clients post
    faults: int  # faults injected per scenario
    settle_s: float  # how long the pipeline may take to catch up after the last fault


PROFILES = {
    # CI: about 1,200 events and 45 alerts per scenario, the whole directory in a few minutes
    "short": Profile("short", subjects=14, cycles=3, toxicity=0.5, rate=90, faults=3, settle_s=90),
    # `make faults`: about 8,300 events and 250 alerts per scenario, more faults
    "long": Profile("long", subjects=60, cycles=5, toxicity=0.5, rate=100, faults=8, settle_s=300),
}


def profile() -> Profile:
    name = os.environ.get("FAULT_PROFILE", "short")
    if name not in PROFILES:
        raise ValueError(f"FAULT_PROFILE={name!r}: one of {', '.join(PROFILES)}")
    return PROFILES[name]


def seed() -> int:
    """FAULT_SEED, or a fresh one; printed, so a failure can be replayed with FAULT_SEED=..."""
    chosen = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(1, 10**9))
    print(f"\nFAULT_SEED={chosen} FAULT_PROFILE={profile().name}")
    return chosen


# Escalation only for passed reporting deadlines (the limits by severity are out of reach), checked
# every 2 s; failed emails retried every 2 s.
FAULT_ENV = {
    "ALERT_EMAIL_RECIPIENTS": ",".join(RECIPIENTS),
    "ESCALATION_RECIPIENTS": ",".join(ESCALATION_RECIPIENTS),
    "ESCALATION_MINUTES": "critical=100000,high=100000,medium=100000",
    "ESCALATION_CHECK_S": "2",
    "NOTIFICATION_RETRY_S": "2",
    "TOPIC_PARTITIONS": "6",
}


@dataclass
class Run:
    """One scenario: the pipeline, the stream and its expected outcome, the faults injected."""

    name: str
    seed: int
    profile: Profile
    pipeline: Pipeline
    groups: list[Group]
    expected: Expected
    rng: random.Random
    faults: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def fault(self, what: str) -> None:
        at = time.monotonic() - self.started
        self.faults.append(what)
        print(f"[{at:6.1f} s] fault {len(self.faults)}: {what}", flush=True)

    @property
    def log_dir(self) -> Path:
        return self.pipeline.services.log_dir


@asynccontextmanager
async def scenario(
    name: str, kafka_bootstrap: str, postgres_url: str, **extra_env: str
) -> AsyncIterator[Run]:
    chosen = seed()
    chosen_profile = profile()
    stream = build_stream(
        chosen, chosen_profile.subjects, chosen_profile.cycles, chosen_profile.toxicity
    )
    expected = expected_outcome(stream)
    print(
        f"{name}: {expected.events} events in {len(groups_of(stream))} requests, "
        f"{len(expected.alert_ids)} expected alerts, {len(expected.emails)} expected emails"
    )
    starting = time.monotonic()
    env = FAULT_ENV | extra_env
    async with fault_pipeline(kafka_bootstrap, postgres_url, name, env) as pipeline:
        print(f"pipeline healthy in {time.monotonic() - starting:.1f} s")
        yield Run(
            name,
            chosen,
            chosen_profile,
            pipeline,
            groups_of(stream),
            expected,
            random.Random(chosen),
        )


@asynccontextmanager
async def fault_pipeline(
    kafka_bootstrap: str, postgres_url: str, name: str, extra_env: dict[str, str]
) -> AsyncIterator[Pipeline]:
    """As tests/e2e's live pipeline (services as processes, a scratch database, a topic
    namespace of their own, an SMTP sink), logs in RUN_DIR/<name>/. On exit the
    services still running are killed and the topics deleted."""
    async with scratch_database(postgres_url, "safetymon_faults") as database_url:
        namespace = f"faults-{name}-{time.time_ns()}."
        prune_old_runs()
        env = {"LOG_FORMAT": "text"} | extra_env
        try:
            async with services_running(
                kafka_bootstrap, database_url, namespace, RUN_DIR / name, env
            ) as pipeline:
                try:
                    yield pipeline
                finally:  # the graceful stop has its own test
                    for process in pipeline.services.processes.values():
                        if process.poll() is None:
                            process.kill()
        finally:
            await drop_topics(kafka_bootstrap, namespace)


def prune_old_runs() -> None:
    for old in (ARTIFACTS / "faults").glob("[0-9]*-[0-9]*-[0-9]*"):
        if old.is_dir() and old != RUN_DIR and time.time() - old.stat().st_mtime > KEEP_RUNS_S:
            shutil.rmtree(old, ignore_errors=True)


async def drop_topics(bootstrap: str, namespace: str) -> None:
    """The scenario's topics deleted, so the shared broker does not grow with every run (its
    logs and the outcome stay in test-artifacts/)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics([f"{namespace}{topic}" for topic in ALL_TOPICS])
    except Exception as error:  # the broker is down after a failed outage test: say so only
        print(f"topics {namespace}* not deleted: {error!r}")
    finally:
        await admin.close()


# --- clients ---------------------------------------------------------------------------------


@dataclass
class Clients:
    """Sites posting the stream to ingest: each subject's batches in order, one at a time, at
    about `rate` events per second overall; a batch without a 2xx answer is sent again (the
    same submissions: the same event ids) until it gets one."""

    url: str
    groups: list[Group]
    rate: float
    acked: set[str] = field(default_factory=set)  # event ids ingest answered 2xx for
    requests: int = 0
    retries: int = 0
    refusals: Counter = field(default_factory=Counter)  # status or error -> count
    posted_events: int = 0  # events of the stream acknowledged so far (each once)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        queues: dict[str, asyncio.Queue] = {}
        workers = []
        async with httpx.AsyncClient(headers=INGEST_AUTH, timeout=45.0) as client:
            started = time.monotonic()
            sent = 0
            for group in self.groups:
                if group.subject_id not in queues:
                    queues[group.subject_id] = asyncio.Queue()
                    workers.append(
                        asyncio.create_task(self._subject(client, queues[group.subject_id]))
                    )
                queues[group.subject_id].put_nowait(group)
                sent += len(group.bodies)
                lag = started + sent / self.rate - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            for queue in queues.values():
                queue.put_nowait(None)
            await asyncio.gather(*workers)
        self.done.set()

    async def _subject(self, client: httpx.AsyncClient, queue: asyncio.Queue) -> None:
        while (group := await queue.get()) is not None:
            await self._post(client, group)

    async def _post(self, client: httpx.AsyncClient, group: Group) -> None:
        pause = 0.2
        while True:
            self.requests += 1
            try:
                response = await client.post(
                    f"{self.url}{group.endpoint}/batch", json=list(group.bodies)
                )
            except httpx.HTTPError as error:
                self.refusals[type(error).__name__] += 1
            else:
                if response.is_success:
                    ids = response.json()["event_ids"]
                    assert sorted(ids) == sorted(group.event_ids), "ingest changed event ids"
                    self.acked.update(ids)
                    self.posted_events += len(ids)
                    return
                if response.status_code < 500:  # the stream is valid: a 4xx is a defect
                    raise AssertionError(
                        f"ingest refused {group.endpoint}: {response.status_code} {response.text}"
                    )
                self.refusals[str(response.status_code)] += 1
            self.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


@asynccontextmanager
async def posting(run: Run, rate: float | None = None) -> AsyncIterator[Clients]:
    """The clients posting in the background; on exit, waits until every batch got its 2xx."""
    clients = Clients(run.pipeline.urls["ingest"], run.groups, rate or run.profile.rate)
    task = asyncio.create_task(clients.run())
    try:
        yield clients
        await asyncio.wait_for(asyncio.shield(task), 600)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    print(
        f"clients: {clients.posted_events} events acknowledged in {clients.requests} requests "
        f"({clients.retries} retried: {dict(clients.refusals)})"
    )


async def until_posted(clients: Clients, share: float) -> None:
    """Until `share` of the stream's events are acknowledged."""
    total = sum(len(g.bodies) for g in clients.groups)
    await poll_until(
        lambda: clients.posted_events >= share * total or clients.done.is_set(), 600, 0.05
    )


async def poll_until(check: Callable[[], bool], timeout_s: float, step_s: float) -> bool:
    """Until `check()` holds (True) or the time is out (False): for what no event announces
    (another process's exit, rows in a database)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step_s)
    return True


# --- services --------------------------------------------------------------------------------


def start_service(run: Run, service: str, name: str | None = None, **env: str) -> None:
    """(Re)start `service` as process `name` (default: the service), its log appended to."""
    services = run.pipeline.services
    name = name or service
    log = open(services.log_dir / f"{name}.log", "a")
    log.write(f"--- started by the fault test at {time.strftime('%H:%M:%S')} ---\n")
    log.flush()
    services.processes[name] = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=services.env | env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    log.close()


def kill(run: Run, name: str) -> None:
    """SIGKILL: no shutdown hook, no commit, no flush, as the OOM killer or a power cut."""
    process = run.pipeline.services.processes[name]
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


async def wait_healthy(run: Run, name: str, url: str | None = None, timeout_s: float = 90) -> float:
    """Seconds until `name` answers /health with 200."""
    started = time.monotonic()
    url = url or run.pipeline.urls[name]
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            process = run.pipeline.services.processes[name]
            if process.poll() is not None:
                raise AssertionError(f"{name} exited ({process.returncode}); see {run.log_dir}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{name} not healthy after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def restarted_in_the_end(script: str, env: dict[str, str] | None = None):
    """The server is started again however the block ends (a failed assertion, an error, a
    cancelled test): others' tests may be using it."""
    try:
        yield
    finally:
        await asyncio.shield(infra(script, "start", env))


@asynccontextmanager
async def broker_to_stop(shared_bootstrap: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The Kafka broker the outage scenario stops and starts: (bootstrap, the environment of
    scripts/kafka for it).

    By default a broker of its own (scripts/kafka with KAFKA_HOME=.local/kafka-faults-<pid>,
    free ports, the shared broker's jars), deleted afterwards: stopping the shared local
    broker stops everyone's tests, and with the hundreds of topics earlier runs leave on it a
    restart takes over 30 s (7 s to stop, 24 s to start, measured). FAULT_KAFKA=shared stops
    the shared broker instead (as CI could, where nothing else runs)."""
    if os.environ.get("FAULT_KAFKA") == "shared":
        yield shared_bootstrap, {}
        return
    async with private_kafka("faults") as (bootstrap, env):
        yield bootstrap, env


# --- settling and checking -------------------------------------------------------------------

CONSUMERS = {
    "grader": CLINICAL_EVENTS,
    "alerts": ALERTS,
    "dsmb-clinical": CLINICAL_EVENTS,
    "dsmb-assessments": ASSESSMENTS,
    "dsmb-alerts": ALERTS,
}


async def lags(run: Run) -> dict[str, int]:
    settings = run.pipeline.settings
    found = {}
    for group, topic in CONSUMERS.items():
        try:
            by_partition = await consumer_lag(
                settings, settings.consumer_group(group), settings.topic(topic)
            )
            found[group] = sum(by_partition.values())
        except Exception:  # the broker or the group coordinator is not back yet
            found[group] = -1
    return found


async def alert_store(run: Run, engine: AsyncEngine | None = None) -> tuple[list[str], Counter]:
    """Every stored alert id (one per row), and the notifications by status."""
    own = engine is None
    engine = engine or create_engine(run.pipeline.database_url)
    try:
        async with engine.connect() as conn:
            ids = [str(r.alert_id) for r in (await conn.execute(select(alerts.c.alert_id)))]
            by_status = select(notifications.c.status, func.count().label("n")).group_by(
                notifications.c.status
            )
            statuses = Counter({r.status: r.n for r in await conn.execute(by_status)})
    finally:
        if own:
            await engine.dispose()
    return ids, statuses


async def settle(run: Run, timeout_s: float | None = None) -> dict:
    """Until every consumer has caught up with its topic, no notification waits to be sent, the
    expected alerts are stored and the expected emails received, and then nothing more happens
    for a few seconds (an escalation pass included: a late extra email is still counted); the
    last state seen, whether it settled or not (what is missing then is reported as lost)."""
    timeout_s = timeout_s or run.profile.settle_s
    quiet_s = float(FAULT_ENV["ESCALATION_CHECK_S"]) + 2
    started = time.monotonic()
    deadline = started + timeout_s
    wanted = set(run.expected.emails)
    last: dict = {}
    quiet_since = time.monotonic()
    while True:
        stored, statuses = [], Counter()
        with contextlib.suppress(Exception):
            stored, statuses = await alert_store(run)
        received = {message_id(m) for m in run.pipeline.sink.messages}
        state = {
            "lags": await lags(run),
            "stored": len(stored),
            "notifications": dict(statuses),
            "emails": run.pipeline.sink.count,
            "expected_emails_received": len(wanted & received),
        }
        if state != last:
            quiet_since = time.monotonic()
        complete = (
            all(lag == 0 for lag in state["lags"].values())
            and set(statuses) <= {"sent"}
            and len(stored) >= len(run.expected.alert_ids)
            and wanted <= received
        )
        if complete and time.monotonic() - quiet_since >= quiet_s:
            print(f"settled {time.monotonic() - started:.1f} s after the stream: {state}")
            return state
        if time.monotonic() > deadline:
            print(f"NOT settled after {timeout_s:.0f} s: {state}")
            return state
        last = state
        await asyncio.sleep(1.0)


def message_id(message) -> str:
    """The notification id an email carries in its Message-ID (services/alerts/notify.py)."""
    return message["Message-ID"].strip("<>").removesuffix("@safetymon")


async def topic_events(run: Run, topic: str) -> tuple[list, int]:
    """Every decodable event of the topic (in log order per partition), and how many records
    could not be decoded."""
    settings = run.pipeline.settings
    found, undecodable = [], 0
    async for batch in read_to_end(settings, settings.topic(topic)):
        for record in batch:
            try:
                event = decode_event(record.value)
            except EventDecodeError:
                undecodable += 1
                continue
            found.append(event)
    return found, undecodable


@dataclass
class Outcome:
    lost_alerts: list[str]
    extra_alerts: list[str]
    duplicated_alerts: list[str]
    lost_emails: list[str]
    lost_email_rows: dict[str, object]  # their notification rows in the alert store
    extra_emails: list[str]
    duplicated_emails: dict[str, int]  # Message-ID -> copies beyond the first
    unacked_missing: list[str]  # acknowledged with a 2xx, not on the clinical topic
    not_acked: int  # stream events never acknowledged
    dead_letters: int
    read_models_equal: bool
    read_model_diff: dict
    emails: int
    stored: int
    lost_assessments: list[str]  # grades, decisions, signals the grader never published
    extra_assessments: list[str]  # published, not following from the stream (stale state)
    republished: dict[str, int]  # records on each topic repeating an event id already there

    def summary(self) -> str:
        return (
            f"lost={len(self.lost_alerts)} duplicated={len(self.duplicated_alerts)} "
            f"extra={len(self.extra_alerts)} emails={self.emails} "
            f"lost_emails={len(self.lost_emails)} "
            f"duplicated_emails={sum(self.duplicated_emails.values())} "
            f"extra_emails={len(self.extra_emails)} acked_missing={len(self.unacked_missing)} "
            f"dead_letters={self.dead_letters} read_models_equal={self.read_models_equal} "
            f"lost_assessments={len(self.lost_assessments)} "
            f"extra_assessments={len(self.extra_assessments)} "
            f"republished={self.republished}"
        )


async def check(run: Run, clients: Clients | None) -> Outcome:
    """Every guarantee measured (not asserted: see `assert_guarantees`)."""
    await settle(run)
    checking = time.monotonic()
    expected = run.expected
    stored, _ = await alert_store(run)
    stored_counts = Counter(stored)
    want = {str(a) for a in expected.alert_ids}

    by_message: Counter = Counter()
    for message in run.pipeline.sink.messages:
        by_message[message_id(message)] += 1
    wanted_emails = set(expected.emails)

    clinical, _ = await topic_events(run, CLINICAL_EVENTS)
    on_topic = {str(e.event_id) for e in clinical}
    assessments, _ = await topic_events(run, ASSESSMENTS)
    assessed = {str(e.event_id) for e in assessments}
    raised_events, _ = await topic_events(run, ALERTS)
    raised = Counter(str(e.event_id) for e in raised_events if e.event_type == "AlertRaised")
    acked = clients.acked if clients else set()
    dead, undecodable_dead = await topic_events(run, DEAD_LETTERS)

    engine = create_engine(run.pipeline.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(notifications))).all()
        notes = {str(r.notification_id): dict(r._mapping) for r in rows}
        live = await read_model_rows(engine)
        result = await rebuild(run.pipeline.settings, engine)
        rebuilt = await read_model_rows(engine)
    finally:
        await engine.dispose()
    diff = {}
    for table in live:
        if live[table] != rebuilt[table]:
            only_live = sorted(set(live[table]) - set(rebuilt[table]), key=str)
            only_rebuilt = sorted(set(rebuilt[table]) - set(live[table]), key=str)
            diff[table] = {
                "live": len(live[table]),
                "rebuilt": len(rebuilt[table]),
                "only_live": [str(r) for r in only_live[:5]],
                "only_rebuilt": [str(r) for r in only_rebuilt[:5]],
            }
    assert result.undecodable == 0
    print(f"checked in {time.monotonic() - checking:.1f} s (rebuild {result.seconds:.1f} s)")
    lost_emails = sorted(wanted_emails - set(by_message))
    return Outcome(
        lost_email_rows={m: notes.get(m, "no notification row") for m in lost_emails},
        lost_alerts=sorted(want - set(stored)),
        extra_alerts=sorted(set(stored) - want),
        duplicated_alerts=sorted(a for a, n in stored_counts.items() if n > 1),
        lost_emails=lost_emails,
        extra_emails=sorted(set(by_message) - wanted_emails),
        duplicated_emails={m: n - 1 for m, n in by_message.items() if n > 1},
        unacked_missing=sorted(acked - on_topic),
        not_acked=len(expected.event_ids - acked) if clients else 0,
        dead_letters=len(dead) + undecodable_dead,
        read_models_equal=not diff,
        read_model_diff=diff,
        emails=run.pipeline.sink.count,
        stored=len(stored),
        lost_assessments=sorted(expected.assessment_ids - assessed),
        extra_assessments=sorted(assessed - expected.assessment_ids),
        republished={
            "clinical": len(clinical) - len(on_topic),
            "assessments": len(assessments) - len(assessed),
            "alerts": sum(raised.values()) - len(raised),
        },
    )


def report(run: Run, outcome: Outcome, clients: Clients | None, **extra) -> str:
    elapsed = time.monotonic() - run.started
    line = (
        f"FAULTS {run.name}: seed={run.seed} profile={run.profile.name} "
        f"events={run.expected.events} faults={len(run.faults)} "
        f"expected_alerts={len(run.expected.alert_ids)} stored={outcome.stored} "
        f"expected_emails={len(run.expected.emails)} {outcome.summary()} "
        + "".join(f"{k}={v} " for k, v in extra.items())
        + f"time={elapsed:.1f}s"
    )
    print(line)
    SUMMARY_LINES.append(line)
    SUMMARY_FILE.parent.mkdir(parents=True, exist_ok=True)
    detail = {
        "scenario": run.name,
        "logs": str(run.log_dir),
        "seed": run.seed,
        "profile": run.profile.name,
        "events": run.expected.events,
        "faults": run.faults,
        "expected_alerts": len(run.expected.alert_ids),
        "expected_emails": len(run.expected.emails),
        "lost_alerts": outcome.lost_alerts,
        "extra_alerts": outcome.extra_alerts,
        "duplicated_alerts": outcome.duplicated_alerts,
        "lost_emails": outcome.lost_email_rows,
        "extra_emails": outcome.extra_emails,
        "duplicated_emails": outcome.duplicated_emails,
        "acked_missing": outcome.unacked_missing,
        "lost_assessments": outcome.lost_assessments,
        "extra_assessments": outcome.extra_assessments,
        "republished": outcome.republished,
        "dead_letters": outcome.dead_letters,
        "read_model_diff": outcome.read_model_diff,
        "clients": {
            "requests": clients.requests,
            "retries": clients.retries,
            "refusals": dict(clients.refusals),
        }
        if clients
        else None,
        "seconds": round(elapsed, 1),
        **extra,
    }
    with SUMMARY_FILE.open("a") as out:
        out.write(json.dumps(detail, default=str) + "\n")
    (run.log_dir / "outcome.json").write_text(json.dumps(detail, default=str, indent=2))
    return line


def assert_guarantees(
    run: Run, outcome: Outcome, allowed_email_duplicates: Callable[[Outcome], int] = lambda o: 0
) -> None:
    """The architecture's guarantees. An email sent again after a crash between the SMTP
    server's acceptance and the alert service recording it carries the same Message-ID (the
    receiving mail system can drop it): a scenario that can cut a send there says how many such
    copies it may cause."""
    where = f"(seed {run.seed}; logs in {run.log_dir})"
    assert not outcome.unacked_missing, f"acknowledged, not in the log: {outcome.unacked_missing}"
    assert outcome.not_acked == 0, f"{outcome.not_acked} events never acknowledged {where}"
    assert not outcome.lost_alerts, f"alerts lost {where}: {outcome.lost_alerts}"
    assert not outcome.extra_alerts, f"alerts not expected {where}: {outcome.extra_alerts}"
    assert not outcome.duplicated_alerts, f"alerts stored twice {where}"
    assert not outcome.lost_emails, f"emails never sent {where}: {outcome.lost_emails}"
    assert not outcome.extra_emails, f"emails not expected {where}: {outcome.extra_emails}"
    copies = sum(outcome.duplicated_emails.values())
    assert copies <= allowed_email_duplicates(outcome), (
        f"emails sent more than once {where}: {outcome.duplicated_emails}"
    )
    assert outcome.dead_letters == 0, f"{outcome.dead_letters} dead letters {where}"
    assert not outcome.lost_assessments, f"assessments never published {where}"
    assert not outcome.extra_assessments, f"assessments from a wrong patient state {where}"
    assert outcome.read_models_equal, (
        f"read models differ from a rebuild from the log {where}: {outcome.read_model_diff}"
    )


async def finish(run: Run, clients: Clients | None, allowed_email_duplicates=None, **extra) -> None:
    outcome = await check(run, clients)
    report(run, outcome, clients, **extra)
    assert_guarantees(run, outcome, allowed_email_duplicates or (lambda o: 0))


def fault_times(run: Run, count: int, start: float, end: float, spacing: float) -> list[float]:
    """`count` seconds-from-now in [start, end], chosen by the seed, at least `spacing` apart
    (less if they would not fit)."""
    spacing = min(spacing, (end - start) / max(1, count))
    slack = (end - start) - spacing * (count - 1)
    cuts = sorted(run.rng.uniform(0, slack) for _ in range(count))
    return [start + cut + spacing * i for i, cut in enumerate(cuts)]


def stream_seconds(run: Run) -> float:
    return run.expected.events / run.profile.rate


async def at_times(times: list[float]) -> AsyncIterator[int]:
    """Yields the index of each of `times` (seconds from the first call) when it comes (at
    once if the previous fault took longer)."""
    started = time.monotonic()
    for i, at in enumerate(times):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        yield i


async def sends_cut_off(run: Run) -> int:
    """Read once the alert service is dead: emails it had claimed for sending and not recorded
    as sent. Each may have reached the SMTP server, and is sent again after the restart (with
    the same Message-ID); no other email can be."""
    _, statuses = await alert_store(run)
    return statuses.get("sending", 0)


async def stored_and_sent(run: Run, engine: AsyncEngine | None = None) -> tuple[int, int]:
    """Alerts stored, notifications sent: (0, 0) while the database does not answer."""
    try:
        stored, statuses = await alert_store(run, engine)
    except Exception:
        return 0, 0
    return len(stored), statuses.get("sent", 0)


async def until_progress(run: Run, stored: int, sent: int, timeout_s: float) -> bool:
    """Until at least `stored` alerts are stored or `sent` emails recorded as sent (whichever
    comes first); False at the timeout."""
    engine = create_engine(run.pipeline.database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            now_stored, now_sent = await stored_and_sent(run, engine)
            if now_stored >= stored or now_sent >= sent:
                return True
            await asyncio.sleep(0.01)
        return False
    finally:
        await engine.dispose()
