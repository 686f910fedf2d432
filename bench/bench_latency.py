"""End-to-end latency of an alert through the live pipeline, HTTP ingest -> alert stored -> email
received, at a fixed offered rate under a background load; prints figures, asserts nothing.

    .venv/bin/python bench/bench_latency.py [--smoke] [--json PATH] [--rate 200] [--seconds 60]
        [--background-rate 500] [--alert-fraction 0.05] [--drain-timeout 60] [--profile DIR]

Needs the local broker and PostgreSQL (`bash scripts/kafka start`, `bash scripts/postgres start`;
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL as they print). Starts the four services as processes
(services.demo.processes, as the demo does) in a topic namespace of their own, on a scratch
database made on the PostgreSQL server of DATABASE_URL and dropped at the end (no other run's
alerts or unsent emails are seen), with the SMTP server they send to in a process of its own
(bench/timed_smtp_sink.py: it stamps each message on arrival). The namespace's topics are deleted
at the end. Phases:

  enrolment  synthetic subjects at the study's three sites over /v1/enrolments/batch: one per
             alerting result to come (dose-hold rules are edge-triggered: a subject's second low
             count raises nothing new) and 60 for the results that alert nothing;
  warm-up    20 quiet results and one alerting result, until its email arrives (connections,
             topic metadata, first SMTP session), outside the figures;
  baseline   the broker alone, at the same offered rate for the same time, the services idle: an
             aiokafka producer (acks=all, idempotent, as the services' own) sends a lab event as
             ingest encodes it, keyed by subject, to a topic of the namespace with as many
             partitions; a plain consumer reads it back. Per record, from its scheduled send
             time: produce -> acknowledged, and produce -> consumed;
  measured   for `--seconds`, open loop: `--rate` lab results/s, each its own POST /v1/labs at its
             scheduled time (a slow answer never delays the next request, and every latency is
             counted from the scheduled time, so queueing in front of ingest is not hidden). They
             are day-1/day-8 blood counts and chemistry in SI units with reference ranges; a
             seeded `--alert-fraction` (5%) is a day-1 ANC of 0.9 x10^9/L, which fires the
             protocol's D1-ANC-HOLD (high) and nothing else. Beside it, the background load:
             `--background-rate` results/s (default 500), inside their reference ranges (none
             alerts), as JSON batches of a tenth of a second's worth (50) to /v1/labs/batch, ten a
             second, also open loop; they go through ingest, Kafka, the grader and the DSMB
             projection like the others. Then it waits (`--drain-timeout`) for every alert.

Per alerting result accepted: post -> 202 (its arrival here); post -> alert stored (`created_at`
of the alert's notification row, which the alert service writes in the transaction that stores
the alert); post -> email received (the SMTP server's stamp). The services stamp with the host
clock this process reads (time.time). Also the stages: post -> alert raised (the alert's
`raised_at`, when the grader derived it), raised -> stored, stored -> email received; CPU time of
each service and of this load generator per result sent (/proc: far less blurred by other
load on the host than latencies); the results accepted per second. p50/p95/p99/max in ms, the
pipeline's as ratios of the baseline's (post -> 202 of produce -> acknowledged; stored and
emailed of produce -> consumed); the target, p99 post -> email received <= 250 ms, is printed,
never asserted. `--profile DIR` also samples each service with py-spy while measuring
(collapsed stacks, DIR/<service>.txt).

With the consumers taking batches, two cores keep up with the defaults (700 results/s in all:
CPU per result falls as batches fill); a heavier load than the host can take makes ingest answer
503 with Retry-After (back-pressure), counted and printed, and the figures are then of the
results it accepted.

Exit 0 when it measured and printed, whatever the figures (results that ingest refused with 503
under overload are counted and printed loudly: that is back-pressure, not loss, even if it left
no alert to time); 1 when it could not measure: an alerting result accepted (202) whose alert was
not stored or not emailed within `--drain-timeout`, or requests failing otherwise with no alert
emailed. `--smoke`: 20 results/s for 5 s with 50/s in the
background (for tests/e2e/test_bench_latency_smoke.py).
"""

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import Figure, emit  # noqa: E402

from services.common.net import free_port  # noqa: E402
from services.demo.databases import asyncpg_dsn, scratch_database  # noqa: E402
from services.demo.processes import (  # noqa: E402
    EXAMPLE_EDC_TOKEN,
    Services,
    service_environment,
)
from services.ingest.domain import LabResultIn, event_id_of, to_event  # noqa: E402
from shared.events import Source, encode_event  # noqa: E402
from shared.kafka import kafka_client_kwargs  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import ALL_TOPICS  # noqa: E402

CHINA = timezone(timedelta(hours=8))
SITES = ("GZ01", "SH02", "BJ03")
# The services run with the example senders file: post as its `edc` (every site).
HEADERS = {"Authorization": f"Bearer {EXAMPLE_EDC_TOKEN}", "Content-Type": "application/json"}
SOURCE_SYSTEM = "lis-bench"
TARGET_P99_MS = 250.0  # the target for post -> email received, p99
QUIET_SUBJECTS = 60
BATCHES_PER_S = 10
ENROLMENT_DAY = date(2026, 1, 5)
# Results that alert nothing: test, SI unit, LLN, ULN and a spread well inside the range (no
# grade, no rule; creatinine is left out: it feeds the clearance rules).
QUIET_PANEL = [
    ("WBC", "10^9/L", 3.5, 9.5, 4.5, 8.5),
    ("ANC", "10^9/L", 1.8, 6.3, 2.2, 5.5),
    ("PLT", "10^9/L", 125.0, 350.0, 160.0, 320.0),
    ("HGB", "g/L", 130.0, 175.0, 135.0, 165.0),
    ("ALT", "U/L", 9.0, 50.0, 12.0, 40.0),
    ("AST", "U/L", 15.0, 40.0, 17.0, 35.0),
    ("TBIL", "umol/L", 3.4, 20.5, 5.0, 17.0),
    ("K", "mmol/L", 3.5, 5.3, 3.7, 5.0),
    ("SODIUM", "mmol/L", 137.0, 147.0, 138.0, 145.0),
]
ALERT_RULE = ("D1-ANC-HOLD", "high")
BASELINE_TOPIC = "bench.baseline"
KEEP_ALIVE_S = 3.0  # reuse a connection idle for less (uvicorn closes them after 5 s)


# ---------------------------------------------------------------------------------------------
# What is sent
# ---------------------------------------------------------------------------------------------


def subject_ids(prefix: str, count: int) -> list[str]:
    return [f"{SITES[n % 3]}-{prefix}{n:05d}" for n in range(count)]


def enrolment(subject: str, rng: random.Random) -> dict[str, Any]:
    """A subject whose baseline fires nothing (creatinine clearance well above 50 mL/min)."""
    return {
        "subject_id": subject,
        "site_id": subject.split("-")[0],
        "enrolled_on": ENROLMENT_DAY.isoformat(),
        "sex": rng.choice("MF"),
        "age_years": rng.randint(45, 65),
        "weight_kg": round(rng.uniform(60, 75), 1),
        "height_cm": float(rng.randint(158, 180)),
        "baseline_creatinine": {"value": 65.0, "unit": "umol/L"},
        "liver_metastases": False,
        "platinum": rng.choice(["cisplatin", "carboplatin"]),
        "source_system": "edc",
        "source_message_id": f"{subject}-enrolment",
    }


def collected(cycle: int, day: int, minutes: int) -> str:
    at = datetime(2026, 1, 8, 7, 30, tzinfo=CHINA) + timedelta(days=21 * (cycle - 1) + day - 1)
    return (at + timedelta(minutes=minutes % 90)).isoformat()


def alerting_lab(subject: str, message_id: str) -> dict[str, Any]:
    """A day-1 ANC of 0.9 x10^9/L: D1-ANC-HOLD (high), the subject's only alert."""
    return {
        "subject_id": subject,
        "site_id": subject.split("-")[0],
        "test": "ANC",
        "value": 0.9,
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": collected(2, 1, 0),
        "visit": {"cycle": 2, "day": 1},
        "source_system": SOURCE_SYSTEM,
        "source_message_id": message_id,
    }


def quiet_lab(subject: str, message_id: str, rng: random.Random) -> dict[str, Any]:
    """A result inside its reference range on a day-1 or day-8 visit: graded 0, no rule."""
    test, unit, low, high, typical_low, typical_high = rng.choice(QUIET_PANEL)
    cycle, day = rng.randint(1, 6), rng.choice((1, 8))
    return {
        "subject_id": subject,
        "site_id": subject.split("-")[0],
        "test": test,
        "value": round(rng.uniform(typical_low, typical_high), 2),
        "unit": unit,
        "reference_low": low,
        "reference_high": high,
        "collected_at": collected(cycle, day, rng.randrange(1000)),
        "visit": {"cycle": cycle, "day": day},
        "source_system": SOURCE_SYSTEM,
        "source_message_id": message_id,
    }


def lab_event_id(study_id: str, message_id: str) -> str:
    """The id ingest gives the lab result of `message_id` (so an alert's trigger is known even
    for a request refused after Kafka took it)."""
    source = Source(system=SOURCE_SYSTEM, message_id=message_id)
    return str(event_id_of("LabResultReported", study_id, source))


@dataclass
class Plan:
    """Every request of the run, encoded beforehand (the sender's loop only sends)."""

    bodies: list[bytes]  # one lab result each, POST /v1/labs, in send order
    alerting: dict[int, str]  # index into `bodies` -> the event id of that alerting result
    batches: list[bytes]  # background, POST /v1/labs/batch, in send order
    batch_size: int
    enrolments: list[bytes]  # batches of at most 1000, POST /v1/enrolments/batch
    warm_up: list[bytes]  # quiet results, then one alerting result last
    warm_up_alert: str  # the event id of the warm-up's alerting result
    run: str  # this run's tag, in every source_message_id


def plan(args: argparse.Namespace, study_id: str, run: str) -> Plan:
    rng = random.Random(5173246)
    count = round(args.rate * args.seconds)
    chosen = sorted(rng.sample(range(count), round(count * args.alert_fraction)))
    alerting = {i: lab_event_id(study_id, f"{run}-{i}") for i in chosen}
    alert_subjects = subject_ids("A", len(alerting) + 1)
    quiet = subject_ids("Q", QUIET_SUBJECTS)
    subjects_left = iter(alert_subjects)
    bodies = []
    for i in range(count):
        if i in alerting:
            body = alerting_lab(next(subjects_left), f"{run}-{i}")
        else:
            body = quiet_lab(rng.choice(quiet), f"{run}-{i}", rng)
        bodies.append(json.dumps(body).encode())
    batch_size = max(1, round(args.background_rate / BATCHES_PER_S))
    batch_count = round(args.seconds * BATCHES_PER_S) if args.background_rate > 0 else 0
    batches = [
        json.dumps(
            [quiet_lab(rng.choice(quiet), f"{run}-bg-{b}-{k}", rng) for k in range(batch_size)]
        ).encode()
        for b in range(batch_count)
    ]
    warm_up = [
        json.dumps(quiet_lab(rng.choice(quiet), f"{run}-warm-{k}", rng)).encode() for k in range(20)
    ]
    warm_up.append(json.dumps(alerting_lab(next(subjects_left), f"{run}-warm-alert")).encode())
    enrolments = [enrolment(s, rng) for s in alert_subjects + quiet]
    return Plan(
        bodies,
        alerting,
        batches,
        batch_size,
        [json.dumps(enrolments[i : i + 1000]).encode() for i in range(0, len(enrolments), 1000)],
        warm_up,
        lab_event_id(study_id, f"{run}-warm-alert"),
        run,
    )


def baseline_records(study_id: str, run: str, subjects: int) -> list[tuple[bytes, bytes]]:
    """Lab events as ingest publishes them (the same encoder, so the same size), keyed by as many
    subjects as the measured phase alerts for, so they spread over the partitions alike."""
    records = []
    for n, subject in enumerate(subject_ids("A", max(subjects, 1))):
        body = LabResultIn.model_validate(alerting_lab(subject, f"{run}-baseline-{n}"))
        event = to_event(body, study_id)
        records.append((event.subject_id.encode(), encode_event(event)))
    return records


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


STARTED = time.monotonic()


def say(line: str) -> None:
    """A progress line, with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {line}", flush=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the value below which p% of the samples lie); NaN if none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Clock:
    """Scheduled send times: `start` on the monotonic clock for sleeping, `wall` the same instant
    on the wall clock, which the services also stamp with (time.time, datetime.now)."""

    start: float
    wall: float
    rate: float

    @classmethod
    def starting_in(cls, delay_s: float, rate: float) -> "Clock":
        now_mono, now_wall = time.monotonic(), time.time()
        return cls(now_mono + delay_s, now_wall + delay_s, rate)

    def scheduled(self, i: int) -> float:
        return self.wall + i / self.rate


async def open_loop(count: int, clock: Clock, send: Callable[[int], Awaitable[None]]) -> None:
    """Start `send(i)` at each scheduled time, never waiting for an earlier one to finish."""
    tasks = []
    for i in range(count):
        delay = clock.start + i / clock.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)


class TimedSink:
    """The SMTP server the alert service sends to (bench/timed_smtp_sink.py), in a process of its
    own so this one's load never delays a stamp; here, the arrivals it reports, by alert id."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}  # alert id -> first message's arrival (wall clock)
        self.messages = 0
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "timed_smtp_sink.py"),
            str(self.port),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        if (await asyncio.wait_for(self._process.stdout.readline(), 30.0)).strip() != b"ready":
            raise RuntimeError("the SMTP sink did not start")
        self._reader = asyncio.create_task(self._read(self._process.stdout))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            alert_id, arrived = line.decode().rstrip("\n").split("\t")
            self.arrived.setdefault(alert_id, float(arrived))
            self.messages += 1

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class _Closed(Exception):
    """The server closed a kept-alive connection before answering."""


class HttpPool:
    """A minimal HTTP/1.1 client over keep-alive connections to ingest, opening another whenever
    every open one is busy (the load is open loop). The load generator shares two cores with
    what it measures: this costs a small fraction of httpx's CPU per request."""

    def __init__(self, base_url: str) -> None:
        self.host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        # Open connections not in use, with when each became idle.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._head = (
            f"Host: {self.host}:{self.port}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        ).encode()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to POST `path` with the JSON `body`."""
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self._head,
            len(body),
            body,
        )
        while self._idle:
            reader, writer, idle_since = self._idle.pop()
            if time.monotonic() - idle_since > KEEP_ALIVE_S:
                writer.close()  # the server may be closing it right now
                continue
            try:
                return await self._exchange(reader, writer, request)
            except _Closed:
                continue  # closed by the server while idle: nothing was answered, send again
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        try:
            writer.write(request)
            status_line = await reader.readline()
            if not status_line:
                raise _Closed
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            answer = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return status, answer

    async def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class Sent:
    """One request: when it was due, when its answer came (wall clock), the answer's status (-1:
    no answer, the connection failed)."""

    scheduled: float
    answered: float = math.nan
    status: int = 0


async def post(pool: HttpPool, path: str, body: bytes, sent: Sent) -> None:
    try:
        status, _ = await pool.post(path, body)
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as error:
        sent.answered, sent.status = time.time(), -1
        print(f"  {path}: {error!r}", file=sys.stderr)
        return
    sent.answered, sent.status = time.time(), status


@dataclass
class Baseline:
    acknowledged_ms: list[float]
    consumed_ms: list[float]
    sent: int


async def broker_baseline(
    settings: Settings, topic: str, rate: float, seconds: float, records: list[tuple[bytes, bytes]]
) -> Baseline:
    """The broker alone at the same offered rate: produce (acks=all, idempotent) -> acknowledged,
    and -> consumed by a plain consumer, each from the scheduled send time."""
    kwargs = kafka_client_kwargs(settings)
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, settings.topic_partitions, settings.topic_replication_factor)]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kwargs, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        **kwargs, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    count = round(rate * seconds)
    acknowledged: dict[int, float] = {}
    consumed: dict[int, float] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def consume() -> None:
            while len(consumed) < count:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        consumed[int(dict(record.headers)["i"])] = now

        reader = asyncio.create_task(consume())
        await asyncio.sleep(1.0)  # the consumer has its partitions and is fetching
        clock = Clock.starting_in(0.2, rate)

        async def send(i: int) -> None:
            key, value = records[i % len(records)]
            headers = [("i", str(i).encode())]
            await (await producer.send(topic, value, key=key, headers=headers))
            acknowledged[i] = time.time()

        await open_loop(count, clock, send)
        try:
            await asyncio.wait_for(reader, 30.0)
        except TimeoutError:
            print(f"  baseline: only {len(consumed)} of {count} records consumed", file=sys.stderr)
    finally:
        await producer.stop()
        await consumer.stop()
    return Baseline(
        [(at - clock.scheduled(i)) * 1000 for i, at in acknowledged.items()],
        [(at - clock.scheduled(i)) * 1000 for i, at in consumed.items()],
        count,
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): how much of the two cores each
    service takes, a figure other runs on the host do not blur as they blur latencies."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_profilers(directory: Path, pids: dict[str, int]) -> list[subprocess.Popen]:
    """py-spy sampling each service (collapsed stacks, flamegraph.pl input) until stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    return [
        subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--nonblocking",
                "--rate",
                "200",
                "--output",
                str(directory / f"{service}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for service, pid in pids.items()
    ]


def stop_profilers(profilers: list[subprocess.Popen]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for profiler in profilers:
        profiler.wait(timeout=30)


@dataclass
class AlertTimes:
    """An alert as the alert service stored it: when the grader raised it and when it was
    stored (the `created_at` of its first notification, written in the transaction that stores
    the alert), on the wall clock."""

    alert_id: str
    raised: float
    stored: float | None
    rule: tuple[str, str]


async def alert_times(dsn: str) -> dict[str, AlertTimes]:
    """Every stored alert, by the event that triggered it."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            """
            select a.alert_id, a.trigger_event_id, a.rule_id, a.severity, a.raised_at,
                   min(n.created_at) as stored_at
            from alerts a left join notifications n
              on n.alert_id = a.alert_id and n.alert_state = 'raised'
            group by a.alert_id
            """
        )
    finally:
        await connection.close()
    return {
        str(r["trigger_event_id"]): AlertTimes(
            str(r["alert_id"]),
            r["raised_at"].timestamp(),
            r["stored_at"].timestamp() if r["stored_at"] else None,
            (r["rule_id"], r["severity"]),
        )
        for r in rows
    }


async def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if mine := [name for name in names if name in existing]:
            await admin.delete_topics(mine)
    except Exception as error:  # leaving topics behind is untidy, not a failed measurement
        print(f"  topics of the run not deleted: {error!r}", file=sys.stderr)
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    baseline: Baseline
    main: list[Sent]
    background: list[Sent]
    alerting: dict[int, str]  # index into `main` -> the event id of that alerting result
    warm_up_alert: str
    alerts: dict[str, AlertTimes]  # every stored alert, by its trigger event id
    emails: dict[str, float]  # first arrival, by alert id
    started: float  # the first scheduled send (wall clock)
    batch_size: int
    cpu_s: dict[str, float]  # CPU time each service used from the first send to the last email
    measured_s: float  # from the first send to the last email


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float) -> bool:
    """Poll `check` every `every_s` until it holds (True) or `timeout_s` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def run(args: argparse.Namespace) -> Run:
    settings = Settings()
    namespace = f"bench-latency-{time.time_ns()}."
    settings = settings.model_copy(update={"topic_namespace": namespace})
    the_plan = plan(args, settings.study_id, run=f"lat{time.time_ns()}")
    logs = ROOT / ".local" / "bench-latency" / "logs"
    sink = TimedSink()
    await sink.start()
    try:
        async with scratch_database(args.database_url, "safetymon_bench_latency") as database_url:
            dsn = asyncpg_dsn(database_url)
            env = service_environment(
                bootstrap=settings.kafka_bootstrap_servers,
                database_url=database_url,
                namespace=namespace,
                smtp_port=sink.port,
                ALERT_EMAIL_RECIPIENTS="safety-desk@example.org",  # one email per alert
                SESSION_SECRET="bench-" + "x" * 32,
                USERS_FILE=str(ROOT / "deploy" / "users.example.yaml"),
            )
            env.pop("ROUTING_FILE", None)  # the default routing: ALERT_EMAIL_RECIPIENTS
            services = Services(env, logs)
            services.start()
            try:
                await services.wait_healthy()
                say(f"services up; logs in {logs}")
                pids = {name: process.pid for name, process in services.processes.items()}
                ingest = services.urls["ingest"]
                return await measure(args, settings, ingest, the_plan, sink, dsn, pids)
            finally:
                services.stop()
    finally:
        await sink.stop()
        names = [settings.topic(name) for name in (*ALL_TOPICS, BASELINE_TOPIC)]
        await delete_topics(settings, names)


async def measure(
    args: argparse.Namespace,
    settings: Settings,
    ingest: str,
    the_plan: Plan,
    sink: TimedSink,
    dsn: str,
    pids: dict[str, int],
) -> Run:
    services = dict(pids)
    pool = HttpPool(ingest)
    try:
        for chunk in the_plan.enrolments:
            status, answer = await pool.post("/v1/enrolments/batch", chunk)
            if status != 202:
                raise SystemExit(f"enrolment refused: {status} {answer[:500]!r}")

        # Warm-up, outside the figures. The quiet results go at once, which opens as many
        # connections as a burst needs.
        warm = [Sent(time.time()) for _ in the_plan.warm_up]
        await asyncio.gather(
            *(
                post(pool, "/v1/labs", body, sent)
                for body, sent in zip(the_plan.warm_up, warm, strict=True)
            )
        )
        if any(sent.status != 202 for sent in warm):
            raise SystemExit(f"warm-up refused: {[sent.status for sent in warm]}")

        async def warm_email() -> bool:
            return sink.messages >= 1

        if not await until(warm_email, 60.0, 0.1):
            raise SystemExit("warm-up: no email within 60 s; see the services' logs")
        say("warm-up done; baseline: the broker alone")

        records = baseline_records(settings.study_id, the_plan.run, len(the_plan.alerting))
        topic = settings.topic(BASELINE_TOPIC)
        baseline = await broker_baseline(settings, topic, args.rate, args.seconds, records)
        say(
            f"measuring: {args.rate:g} results/s for {args.seconds:g} s, "
            f"{args.background_rate:g}/s in the background"
        )

        clock = Clock.starting_in(0.5, args.rate)
        main = [Sent(clock.scheduled(i)) for i in range(len(the_plan.bodies))]
        background_clock = Clock(clock.start, clock.wall, BATCHES_PER_S)
        background = [Sent(background_clock.scheduled(b)) for b in range(len(the_plan.batches))]
        pids = pids | {"load generator": os.getpid()}  # this process: it shares the cores
        cpu_before = {service: cpu_seconds(pid) for service, pid in pids.items()}
        measuring = time.monotonic()
        profilers = start_profilers(args.profile, services) if args.profile else []
        await asyncio.gather(
            open_loop(
                len(main),
                clock,
                lambda i: post(pool, "/v1/labs", the_plan.bodies[i], main[i]),
            ),
            open_loop(
                len(background),
                background_clock,
                lambda b: post(pool, "/v1/labs/batch", the_plan.batches[b], background[b]),
            ),
        )
    finally:
        await pool.close()
    say("sent; waiting for the alerts and their emails")

    expected = [t for i, t in the_plan.alerting.items() if main[i].status == 202]

    async def all_in() -> bool:
        alerts = await alert_times(dsn)
        found = [alerts[t] for t in expected if t in alerts]
        return len(found) == len(expected) and all(a.alert_id in sink.arrived for a in found)

    if await until(all_in, args.drain_timeout, 0.5):
        say("every alert stored and emailed")
    else:
        say(f"not every alert stored and emailed within {args.drain_timeout:g} s")
    await asyncio.sleep(1.0)  # time for an alert nobody expected to show
    cpu = {service: cpu_seconds(pid) - cpu_before[service] for service, pid in pids.items()}
    measured_s = time.monotonic() - measuring
    stop_profilers(profilers)
    return Run(
        baseline,
        main,
        background,
        the_plan.alerting,
        the_plan.warm_up_alert,
        await alert_times(dsn),
        dict(sink.arrived),
        clock.wall,
        the_plan.batch_size,
        cpu,
        measured_s,
    )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000


def percentiles(
    what: str,
    values: list[float],
    baseline: str | None = None,
    base: Sequence[float] = (),
    notes: dict[str, Any] | None = None,
    **target: Any,
) -> list[Figure]:
    """p50, p95, p99 and max of `values` (ms), each beside the same percentile of `base`; the
    target, if any, on p99."""
    figures = []
    for label, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        figures.append(
            Figure(
                f"{what} {label}",
                percentile(values, p),
                "ms",
                baseline=f"{baseline} {label}" if baseline else None,
                baseline_value=percentile(list(base), p) if baseline else None,
                notes={"samples": len(values)} | (notes or {}),
                **(target if label == "p99" else {}),
            )
        )
    return figures


def figures_of(result: Run, args: argparse.Namespace) -> tuple[list[Figure], dict[str, int]]:
    to_202, stored, emailed, raised, store_step, email_step = [], [], [], [], [], []
    refused = refused_but_alerted = not_stored = not_emailed = other_rule = 0
    for i, trigger in result.alerting.items():
        sent, alert = result.main[i], result.alerts.get(trigger)
        if sent.status != 202:
            refused += 1
            refused_but_alerted += alert is not None  # Kafka had it when ingest gave up
            continue
        to_202.append(ms(sent.answered - sent.scheduled))
        if alert is None or alert.stored is None:
            not_stored += 1
            continue
        other_rule += alert.rule != ALERT_RULE
        raised.append(ms(alert.raised - sent.scheduled))
        stored.append(ms(alert.stored - sent.scheduled))
        store_step.append(ms(alert.stored - alert.raised))
        arrived = result.emails.get(alert.alert_id)
        if arrived is None:
            not_emailed += 1
            continue
        emailed.append(ms(arrived - sent.scheduled))
        email_step.append(ms(arrived - alert.stored))
    ours = {*result.alerting.values(), result.warm_up_alert}
    sent_all = result.main + result.background
    answers: dict[str, int] = {}
    for sent in sent_all:
        if sent.status != 202:
            key = "no answer" if sent.status == -1 else str(sent.status)
            answers[key] = answers.get(key, 0) + 1
    accepted = sum(1 for s in result.main if s.status == 202)
    accepted += result.batch_size * sum(1 for s in result.background if s.status == 202)
    window_s = max(s.answered for s in sent_all) - result.started  # first send to last answer
    counts = {
        "alerting results sent": len(result.alerting),
        "alerting results refused (not 202)": refused,
        "  of which alerted anyway": refused_but_alerted,
        "alerts expected (alerting results accepted)": len(to_202),
        "alerts stored": len(stored),
        "alerts emailed": len(emailed),
        "MISSING: accepted, alert not stored": not_stored,
        "MISSING: stored, email not received": not_emailed,
        "alerts of another rule than D1-ANC-HOLD": other_rule,
        "alerts nobody expected": sum(1 for t in result.alerts if t not in ours),
        "requests not accepted (all streams)": sum(answers.values()),
        **{f"  answered {status}": n for status, n in sorted(answers.items())},
        "baseline records not consumed": result.baseline.sent - len(result.baseline.consumed_ms),
    }
    b = result.baseline
    to_consumed, to_acknowledged = "broker produce->consume", "broker produce->ack"
    target = {"target": TARGET_P99_MS, "target_is": "<="}
    # Of the accepted alerting results only: say beside each how many ingest refused.
    notes = {"alerting_results_refused": refused}
    every_202 = [ms(s.answered - s.scheduled) for s in result.main if s.status == 202]
    batch_202 = [ms(s.answered - s.scheduled) for s in result.background if s.status == 202]
    figures = [
        *percentiles(
            "post -> email received", emailed, to_consumed, b.consumed_ms, notes, **target
        ),
        *percentiles("post -> alert stored", stored, to_consumed, b.consumed_ms, notes),
        *percentiles(
            "post -> 202 (alerting results)", to_202, to_acknowledged, b.acknowledged_ms, notes
        ),
        Figure("post -> 202 p99, every single result", percentile(every_202, 99), "ms"),
        Figure("batch post -> 202 p99 (background)", percentile(batch_202, 99), "ms"),
        Figure("stage: post -> raised by the grader p50", percentile(raised, 50), "ms"),
        Figure("stage: post -> raised by the grader p99", percentile(raised, 99), "ms"),
        Figure("stage: raised -> stored p50", percentile(store_step, 50), "ms"),
        Figure("stage: raised -> stored p99", percentile(store_step, 99), "ms"),
        Figure("stage: stored -> email received p50", percentile(email_step, 50), "ms"),
        Figure("stage: stored -> email received p99", percentile(email_step, 99), "ms"),
        Figure("baseline: broker produce->ack p50", percentile(b.acknowledged_ms, 50), "ms"),
        Figure("baseline: broker produce->ack p99", percentile(b.acknowledged_ms, 99), "ms"),
        Figure("baseline: broker produce->consume p50", percentile(b.consumed_ms, 50), "ms"),
        Figure("baseline: broker produce->consume p95", percentile(b.consumed_ms, 95), "ms"),
        Figure("baseline: broker produce->consume p99", percentile(b.consumed_ms, 99), "ms"),
        Figure(
            "offered: results/s (single + background)",
            args.rate + (args.background_rate if result.background else 0),
            "events/s",
        ),
        Figure(
            "achieved: results accepted (202)/s",
            accepted / window_s,
            "events/s",
            notes={"accepted": accepted, "seconds": round(window_s, 2)},
        ),
        Figure("alerts expected", len(to_202), "alerts"),
        Figure("alerts stored", len(stored), "alerts"),
        Figure("alerts emailed", len(emailed), "alerts"),
        Figure("alerts missing (accepted, not emailed)", not_stored + not_emailed, "alerts"),
        Figure("alerting results refused by ingest", refused, "results"),
    ]
    # CPU per result sent (a refused one costs too), by service: the host's cores are what
    # every stage queues for.
    sent_results = len(result.main) + result.batch_size * len(result.background)
    for service, seconds in sorted(result.cpu_s.items()):
        figures.append(
            Figure(
                f"CPU of {service} per result sent",
                ms(seconds / sent_results),
                "ms",
                notes={"cpu_s": round(seconds, 2), "cores": round(seconds / result.measured_s, 2)},
            )
        )
    return figures, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="single results per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--background-rate", type=float, default=500.0, help="results/s sent in batches"
    )
    parser.add_argument("--alert-fraction", type=float, default=0.05)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--profile", type=Path, help="py-spy each service while measuring, stacks into this dir"
    )
    parser.add_argument("--smoke", action="store_true", help="20/s for 5 s, 50/s background")
    args = parser.parse_args()
    if args.smoke:
        args.rate, args.seconds, args.background_rate = 20.0, 5.0, 50.0
        args.drain_timeout = min(args.drain_timeout, 20.0)
    if not args.database_url.startswith("postgresql"):
        parser.error("DATABASE_URL (or --database-url) must be PostgreSQL: postgresql+asyncpg://")
    if not 0 < args.alert_fraction <= 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive, --alert-fraction in (0, 1]")
    result = asyncio.run(run(args))
    figures, counts = figures_of(result, args)
    params = {
        "rate": args.rate,
        "seconds": args.seconds,
        "background_rate": args.background_rate,
        "background_batch": result.batch_size,
        "alert_fraction": args.alert_fraction,
        "smoke": args.smoke,
        "counts": counts,
    }
    emit("e2e latency", params, figures, args.json)
    for name, value in counts.items():
        print(f"  {name:<46} {value:>8,}")
    if (
        counts["alerting results refused (not 202)"]
        or counts["requests not accepted (all streams)"]
    ):
        print(
            f"REFUSED: ingest did not accept {counts['requests not accepted (all streams)']:,} "
            f"requests, {counts['alerting results refused (not 202)']:,} of them alerting "
            "results: the figures are of the accepted ones only",
            file=sys.stderr,
        )
    missing = counts["MISSING: accepted, alert not stored"]
    missing += counts["MISSING: stored, email not received"]
    # Answers other than 202 and 503 (back-pressure): errors, or no answer at all.
    broken = sum(n for k, n in counts.items() if k.startswith("  answered") and "503" not in k)
    if missing or (broken and not counts["alerts emailed"]):
        print(
            f"MISSING: {missing} accepted alerting results without a stored alert or an email, "
            f"{broken} requests failed ({counts['alerts emailed']} alerts emailed): "
            "no valid measurement",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
