"""The grader's resident memory holding N subjects' state, against the same grader on an empty
topic; prints figures, no asserts.

    .venv/bin/python bench/bench_grader_memory.py [--subjects 100000] [--smoke] [--json PATH]
        [--partitions 48] [--max-rss-mb 8000] [--timeout-s 10800] [--keep]

Needs the local broker (`bash scripts/kafka start`; KAFKA_BOOTSTRAP_SERVERS as it prints).

The log: `--subjects` subjects of the demo cohort (services/demo/cohort.py: enrolment, day-1 and
day-8 lab panels with the sites' ranges, doses), one or two cycles each, enrolled over two years,
with day-1 and day-8 toxicity written in as the fault tests do (tests/faults/stream.py: holds,
grade 3-4 counts, a febrile-neutropenia SAE), a lab sample retracted for 2% of the subjects and a
lab value corrected for 2%: the events ingest publishes for them (its own to_event). To be fast,
only one subject in 20 (at most 5,000, at least 100) goes through ingest's models: the others are
copies of one of these, under their own subject id and with event ids of their own (the event
bytes rewritten), sharing its values and dates. Produced in log order (by the time the sites
send them) to the clinical-events topic of a topic namespace of this run's own, keyed by
subject id with the event_type header as shared/kafka.publish_events does, with `--partitions`
partitions (48: the rebuild of one, some 80,000 events at 100,000 subjects, stays well within
the consumer's five-minute poll interval; the memory does not depend on it).

The grader is a grader restarted on that log: the group's offsets are committed at the end of
the log, the grader service is started as deployed (`safetymon serve grader`, its own process,
as services/demo/processes.py starts it), one more lab result is sent per partition, for a
subject of that partition, one partition after the other, and the grader rebuilds each
partition's ledgers from the log on the first message it takes there. Once it committed them
all: VmRSS and VmHWM of its process (/proc/<pid>/status). The baseline is the same grader
started on an empty topic and sent the same kind of lab result per partition. Also printed,
for reference: the log's size (keys and values), and the grader's deleted-but-open (scratch)
files on disk.

The state is checked: the grader's log says each partition's ledgers were rebuilt once and the
subjects rebuilt add up to `--subjects`; each probe result produced its grade on the assessments
topic; and `/v1/subjects/{id}/explain` of a sample of subjects (with and without revisions, and
probed ones) answers exactly what the grader's own ledger makes of that subject's events in
this process (its latency is printed, with that of a subject not in memory, which reads the
log). Exit 0 when it measured and the check passed, 1 otherwise. The grader is stopped once its
resident size passes `--max-rss-mb` (the figure then says so). Topics are deleted at the end
unless `--keep`; the graders' logs are in .local/bench-grader-memory/ (by namespace).
"""

import argparse
import asyncio
import heapq
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402
from pydantic_core import to_jsonable_python  # noqa: E402

from bench.report import Figure, emit  # noqa: E402
from services.common.net import free_port  # noqa: E402
from services.ctcae_grader.explain import explain  # noqa: E402
from services.ctcae_grader.ledger import RevisionRefused, SubjectLedger  # noqa: E402
from services.demo import cohort as demo  # noqa: E402
from services.demo.processes import service_environment  # noqa: E402
from services.ingest.domain import LabCorrectionIn, LabResultIn, RetractionIn, to_event  # noqa: E402
from shared.events import Envelope, LabGraded, decode_event, encode_event  # noqa: E402
from shared.kafka import consumer_lag, ensure_topics, kafka_client_kwargs, read_to_end  # noqa: E402
from shared.protocol import study_protocol  # noqa: E402
from shared.reference_ranges import load_reference_ranges  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402
from shared.topics import ALL_TOPICS, ASSESSMENTS, CLINICAL_EVENTS  # noqa: E402

TARGET_MB = 300.0  # the issue: "grader <= 300 MB at 100,000 subjects"
STUDY = "NCT05173246"
ACCRUAL_DAYS = 730
TOXICITY = 0.15  # share of subject-cycles with day-1 toxicity written in (day 8: half that)
REVISED_CHANCE = 0.02  # per subject: a lab sample retracted; again: a lab value corrected
COPIES_PER_TEMPLATE = 20
TEMPLATES_MIN, TEMPLATES_MAX = 100, 5000
PUBLISH_BATCH = 10_000
EXPLAINED = 8  # subjects whose explain is checked
LOG_DIR = ROOT / ".local" / "bench-grader-memory"
REBUILT = re.compile(
    r"partition (\d+) state rebuilt below offset (\d+) in [\d.]+ s: (\d+) subjects"
)


# ---------------------------------------------------------------------------------------------
# The log: template subjects through ingest, copies of them by rewriting their bytes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """One event of a template subject: when it is sent, and the ids in its bytes."""

    at: datetime
    event_type: str
    raw: bytes
    ids: tuple[str, ...]  # its own id, and the id a revision names


@dataclass
class Template:
    subject_id: str
    events: list[Stored]
    copies: list[str] = field(default_factory=list)  # subject ids of its copies

    @property
    def revised(self) -> bool:
        return any(e.event_type in ("EventCorrected", "EventRetracted") for e in self.events)


def template_subjects(count: int, copies: int, seed: int) -> list[Template]:
    """`count` demo subjects, each with 1 or 2 cycles, toxicity and revisions (seeded), their
    submissions through ingest's models; subject ids GZ01-000001 and on."""
    rng = random.Random(seed)
    subjects = demo._subjects(count, rng)
    demo._write_in_cases(subjects)
    first = subjects[0].start
    templates = []
    for index, subject in enumerate(subjects):
        subject.subject_id = f"{subject.site_id}-{index + 1:06d}"
        subject.start = first + timedelta(days=int(index * ACCRUAL_DAYS / count))
        cycles = rng.choice((1, 2))
        # (the demo's own adverse events of the cycles this subject gets)
        subject.adverse_events = [ae for ae in subject.adverse_events if ae["cycle"] <= cycles]
        demo.write_in_toxicity(subject, cycles, TOXICITY, rng)
        history = demo._subject_history(subject, cycles, rng)
        events = [(s.at, e) for s, e in zip(history, demo.cohort_events(history), strict=True)]
        events = sorted(events + revisions(events, rng), key=lambda e: e[0])
        templates.append(Template(subject.subject_id, [stored(at, event) for at, event in events]))
    # Copies after the templates, numbered on; each the copy of a template taken in turn.
    for number in range(count + 1, copies + count + 1):
        template = templates[(number - 1) % count]
        site = template.subject_id.split("-")[0]
        template.copies.append(f"{site}-{number:06d}")
    return templates


def revisions(events: list[tuple[datetime, Envelope]], rng: random.Random) -> list:
    """A lab sample rejected, a lab value re-reported corrected: each sent three days later."""
    labs = [(at, e) for at, e in events if e.event_type == "LabResultReported"]
    out = []
    if rng.random() < REVISED_CHANCE:
        at, lab = rng.choice(labs)
        request = RetractionIn(
            subject_id=lab.subject_id,
            site_id=lab.site_id,
            source_system="edc",
            source_message_id=f"{lab.source.message_id}-retracted",
            retracted_event_id=lab.event_id,
            reason="sample haemolysed",
        )
        out.append((at + timedelta(days=3), to_event(request, STUDY)))
    if rng.random() < REVISED_CHANCE:
        at, lab = rng.choice(labs)
        p = lab.payload
        corrected = LabResultIn(
            subject_id=lab.subject_id,
            site_id=lab.site_id,
            test=p.test.value,
            value=round(p.reported.value * rng.choice((0.5, 0.8, 1.25, 2.0)), 2),
            unit=p.reported.unit,
            reference_low=p.reported.lln,
            reference_high=p.reported.uln,
            collected_at=lab.occurred_at,
            visit=p.visit.model_dump() if p.visit else None,
            source_system=lab.source.system,
            source_message_id=f"{lab.source.message_id}-v2",
        )
        request = LabCorrectionIn(
            subject_id=lab.subject_id,
            site_id=lab.site_id,
            source_system=lab.source.system,
            source_message_id=f"{lab.source.message_id}-corrected",
            corrected_event_id=lab.event_id,
            reason="transcription error",
            corrected=corrected,
        )
        out.append((at + timedelta(days=3), to_event(request, STUDY)))
    return out


def stored(at: datetime, event: Envelope) -> Stored:
    payload = event.payload
    named = getattr(payload, "corrected_event_id", None) or getattr(
        payload, "retracted_event_id", None
    )
    ids = (str(event.event_id), *([str(named)] if named else []))
    return Stored(at, event.event_type, encode_event(event), ids)


def copy_events(template: Template, subject_id: str) -> list[tuple[str, bytes]]:
    """The template's events as another subject's: (event_type, bytes), in order."""
    return [(e.event_type, rewrite(template, e, subject_id)) for e in template.events]


def rewrite(template: Template, event: Stored, subject_id: str) -> bytes:
    if subject_id == template.subject_id:
        return event.raw
    # Subject ids are all of one width, and a subject's events name no other subject.
    raw = event.raw.replace(f'"{template.subject_id}'.encode(), f'"{subject_id}'.encode())
    for old in event.ids:
        raw = raw.replace(old.encode(), str(uuid.uuid5(uuid.UUID(old), subject_id)).encode())
    return raw


Record = tuple[str, bytes, bytes]  # subject id, event_type, bytes


def log_order(templates: list[Template]) -> Iterator[Record]:
    """Every subject's events in the order the sites send them: by time, a template's copies
    right after it (they share its dates); the events one site sends at once stay together."""

    def bursts(index: int, template: Template) -> Iterator[tuple[datetime, int, list[Stored]]]:
        burst: list[Stored] = []
        for event in template.events:
            if burst and event.at != burst[0].at:
                yield burst[0].at, index, burst
                burst = []
            burst.append(event)
        if burst:
            yield burst[0].at, index, burst

    merged = heapq.merge(*(bursts(i, t) for i, t in enumerate(templates)), key=lambda b: b[:2])
    for _, index, burst in merged:
        template = templates[index]
        for subject_id in (template.subject_id, *template.copies):
            for event in burst:
                yield subject_id, event.event_type.encode(), rewrite(template, event, subject_id)


# ---------------------------------------------------------------------------------------------
# Kafka: producing the log, the group's offsets, the probes
# ---------------------------------------------------------------------------------------------


@dataclass
class Produced:
    events: int = 0
    log_bytes: int = 0
    first_in: dict[int, str] = field(default_factory=dict)  # partition -> its first subject


async def produce_log(settings: Settings, records: Iterator[Record]) -> Produced:
    """Every record, keyed by subject id, in batches enqueued in order and then acknowledged
    together (acks=all, idempotent); notes the first subject of each partition."""
    topic = settings.topic(CLINICAL_EVENTS)
    produced = Produced()
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=1 << 20,
    )
    await producer.start()
    try:
        batch: list[tuple[str, asyncio.Future]] = []

        async def settle() -> None:
            for subject_id, sent in batch:
                produced.first_in.setdefault((await sent).partition, subject_id)
            batch.clear()

        for subject_id, event_type, raw in records:
            key = subject_id.encode()
            sent = await producer.send(topic, raw, key=key, headers=[("event_type", event_type)])
            batch.append((subject_id, sent))
            produced.events += 1
            produced.log_bytes += len(key) + len(raw)
            if len(batch) >= PUBLISH_BATCH:
                await settle()
                if produced.events % 200_000 < PUBLISH_BATCH:
                    print(f"  {produced.events:,} events produced", flush=True)
        await settle()
    finally:
        await producer.stop()
    return produced


async def commit_to_end(settings: Settings, group: str) -> dict[int, int]:
    """`group` committed at the end of the clinical-events topic: a grader that took it all."""
    topic = settings.topic(CLINICAL_EVENTS)
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.commit({tp: end for tp, end in ends.items() if end > 0})
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        await consumer.stop()


def probe_event(subject_id: str, site_id: str, run: str) -> Envelope:
    """A day-1 ANC of cycle 3, grade 2: graded, and it holds chemotherapy."""
    return to_event(
        LabResultIn(
            subject_id=subject_id,
            site_id=site_id,
            test="ANC",
            value=1.1,
            unit="10^9/L",
            reference_low=1.8,
            reference_high=6.3,
            collected_at=datetime(2027, 3, 1, 7, 30, tzinfo=UTC),
            visit={"cycle": 3, "day": 1},
            source_system=f"lis-{site_id.lower()}",
            source_message_id=f"{subject_id}-probe-{run}",
        ),
        STUDY,
    )


async def send_probe(
    producer: AIOKafkaProducer, topic: str, partition: int, event: Envelope
) -> None:
    sent = await producer.send(
        topic,
        encode_event(event),
        key=event.subject_id.encode(),
        partition=partition,
        headers=[("event_type", event.event_type.encode())],
    )
    await sent


async def graded_probes(settings: Settings, probes: dict[int, Envelope]) -> int:
    """How many probes have their grade on the assessments topic."""
    wanted = {event.event_id for event in probes.values()}
    found = set()
    async for records in read_to_end(settings, settings.topic(ASSESSMENTS)):
        for record in records:
            event = decode_event(record.value)
            if isinstance(event, LabGraded) and event.causation_id in wanted:
                found.add(event.causation_id)
    return len(found)


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(name) for name in ALL_TOPICS])
    finally:
        await admin.close()


# ---------------------------------------------------------------------------------------------
# The grader process and its memory
# ---------------------------------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (10^6 bytes)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024 / 1e6
    return fields


def scratch_mb(pid: int) -> float:
    """Files the process holds open that are deleted (its scratch files), in MB."""
    total = 0
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd).endswith(" (deleted)"):
                total += os.stat(fd).st_size
        except OSError:
            continue
    return total / 1e6


@dataclass
class GraderRun:
    rss_mb: float = 0.0
    hwm_mb: float = 0.0
    scratch_mb: float = 0.0
    seconds: float = 0.0  # from the probes sent to every one committed
    rebuilt_subjects: int = 0
    rebuilt_partitions: int = 0
    graded_probes: int = 0
    aborted: str = ""  # why it was stopped before it took the probes
    explained: list[dict[str, Any]] = field(default_factory=list)
    unknown_explain_s: float = 0.0  # a subject not in memory: explain reads the whole log
    exit_code: int | None = None


class Grader:
    """`safetymon serve grader` in its own process, as services/demo/processes.py starts it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Named by the run's namespace: runs side by side never share a log.
        self.log_path = LOG_DIR / f"{settings.topic_namespace.rstrip('.')}.log"
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = service_environment(
            bootstrap=settings.kafka_bootstrap_servers,
            database_url=settings.database_url,
            namespace=settings.topic_namespace,
            smtp_port=1,
            GRADER_PORT=str(self.port),
            TOPIC_PARTITIONS=str(settings.topic_partitions),
        )
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", "grader"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_healthy(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the grader exited; see {self.log_path}")
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the grader is not healthy; see {self.log_path}")
                await asyncio.sleep(0.3)

    def rebuilt(self) -> list[tuple[int, int]]:
        """(partition, subjects) of every rebuild the grader logged, in order."""
        text = self.log_path.read_text(errors="replace")
        return [(int(p), int(n)) for p, _, n in REBUILT.findall(text)]

    async def explain_seconds(self, subject_id: str) -> tuple[int, float]:
        async with httpx.AsyncClient(timeout=600.0) as client:
            started = time.perf_counter()
            response = await client.get(f"{self.url}/v1/subjects/{subject_id}/explain")
            return response.status_code, time.perf_counter() - started

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


async def measure(
    grader: "Grader",
    settings: Settings,
    label: str,
    probes: dict[int, Envelope],
    max_rss_mb: float,
    timeout_s: float,
) -> GraderRun:
    """Once the grader is up, send the probes one partition at a time, each once the one before is
    committed (the grader rebuilds a partition while it handles a batch, between two polls of
    the broker: all in one batch, the rebuilds would outlast the consumer's poll interval and
    the grader would leave its group), watching its memory; then read its memory. The grader is
    left running (for the explain checks)."""
    group = settings.consumer_group("grader")
    topic = settings.topic(CLINICAL_EVENTS)
    run = GraderRun()
    await grader.wait_healthy()
    await asyncio.sleep(1.0)  # joined its group and got its partitions
    started = time.perf_counter()
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), acks="all", enable_idempotence=True
    )
    await producer.start()
    reported = 0
    try:
        for partition, probe in probes.items():
            await send_probe(producer, topic, partition, probe)
            while not run.aborted:
                memory = memory_mb(grader.process.pid)
                rebuilt = grader.rebuilt()
                for rebuilt_partition, subjects in rebuilt[reported:]:
                    print(
                        f"  [{label}] partition {rebuilt_partition} rebuilt: {subjects:,} "
                        f"subjects ({time.perf_counter() - started:,.0f} s, "
                        f"{memory['VmRSS']:,.0f} MB resident)",
                        flush=True,
                    )
                reported = len(rebuilt)
                if memory["VmRSS"] > max_rss_mb:
                    run.aborted = f"resident size passed {max_rss_mb:,.0f} MB"
                elif time.perf_counter() - started > timeout_s:
                    run.aborted = f"the probes were not all taken within {timeout_s:,.0f} s"
                elif len(rebuilt) > len({p for p, _ in rebuilt}):
                    run.aborted = "a partition was rebuilt twice (the grader left its group?)"
                elif (await consumer_lag(settings, group, topic)).get(partition) == 0:
                    break
                else:
                    await asyncio.sleep(0.5)
            if run.aborted:
                break
    finally:
        await producer.stop()
    run.seconds = time.perf_counter() - started
    await asyncio.sleep(2.0)  # what the last message left behind is freed
    memory = memory_mb(grader.process.pid)
    run.rss_mb, run.hwm_mb = memory["VmRSS"], memory["VmHWM"]
    run.scratch_mb = scratch_mb(grader.process.pid)
    latest = dict(grader.rebuilt())
    run.rebuilt_partitions = len(latest)
    run.rebuilt_subjects = sum(latest.values())
    if not run.aborted:
        run.graded_probes = await graded_probes(settings, probes)
    return run


async def check_explain(
    grader: Grader, subjects: dict[str, list[bytes]], protocol: Any, ranges: Any
) -> list[dict[str, Any]]:
    """Each subject's explain from the grader against this process's ledger of its events."""
    results = []
    async with httpx.AsyncClient(timeout=300.0) as client:
        for subject_id, events in subjects.items():
            ledger = SubjectLedger()
            for raw in events:
                try:
                    ledger.record(protocol, decode_event(raw), ranges)
                except RevisionRefused:
                    pass
            # As the grader answers it: its route returns `dict`, serialised by pydantic.
            state = ledger.state
            expected = to_jsonable_python(explain(protocol, state)) if state else None
            started = time.perf_counter()
            response = await client.get(f"{grader.url}/v1/subjects/{subject_id}/explain")
            seconds = time.perf_counter() - started
            answered = response.json() if response.status_code == 200 else None
            if answered != expected:  # kept for a look
                mismatch = {"answered": answered, "expected": expected}
                path = grader.log_path.with_name(
                    f"{grader.log_path.stem}-explain-{subject_id}.json"
                )
                path.write_text(json.dumps(mismatch, indent=1))
            results.append(
                {
                    "subject_id": subject_id,
                    "events": len(events),
                    "status": response.status_code,
                    "seconds": round(seconds, 4),
                    "matches": answered is not None and answered == expected,
                    "differs_in": sorted(
                        key
                        for key in {*(answered or {}), *(expected or {})}
                        if (answered or {}).get(key) != (expected or {}).get(key)
                    ),
                }
            )
    return results


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def scoped(settings: Settings, name: str, partitions: int) -> Settings:
    return settings.model_copy(
        update={
            "topic_namespace": f"bench-memory-{name}-{time.time_ns()}.",
            "topic_partitions": partitions,
        }
    )


def sample(templates: list[Template], probes: dict[int, Envelope], seed: int) -> list[str]:
    """Subjects whose explain is checked: probed ones, revised templates and copies, others."""
    rng = random.Random(seed)
    revised = [t for t in templates if t.revised]
    chosen = [e.subject_id for e in list(probes.values())[:2]]
    for t in revised[:2]:
        chosen += [t.subject_id, *t.copies[:1]]
    everyone = [s for t in templates for s in (t.subject_id, *t.copies)]
    while len(chosen) < EXPLAINED and len(chosen) < len(everyone):
        subject = rng.choice(everyone)
        if subject not in chosen:
            chosen.append(subject)
    return chosen


def events_of(templates: list[Template], subject_id: str) -> list[bytes]:
    for template in templates:
        if subject_id == template.subject_id or subject_id in template.copies:
            return [raw for _, raw in copy_events(template, subject_id)]
    return []


async def run(args: argparse.Namespace) -> int:
    base = get_settings()
    run_id = f"{time.time_ns()}"
    count = max(1, args.subjects)
    n_templates = min(count, max(TEMPLATES_MIN, min(TEMPLATES_MAX, count // COPIES_PER_TEMPLATE)))
    started = time.perf_counter()
    templates = template_subjects(n_templates, count - n_templates, seed=demo.SEED)
    print(
        f"{n_templates:,} template subjects through ingest in "
        f"{time.perf_counter() - started:.1f} s; {count - n_templates:,} copies of them",
        flush=True,
    )
    protocol = study_protocol(base.study_id, base.protocol_file)
    ranges = load_reference_ranges(base.reference_ranges_file)

    # The baseline, while the log is produced: the grader on an empty topic, sent one lab
    # result per partition.
    empty = scoped(base, "empty", args.partitions)
    await ensure_topics(empty)
    empty_probes = {
        p: probe_event(f"GZ01-P{p:05d}", "GZ01", run_id) for p in range(args.partitions)
    }
    empty_grader = Grader(empty)
    graders = [empty_grader]  # stopped at the end whatever happens
    baseline_run = asyncio.create_task(
        measure(empty_grader, empty, "empty", empty_probes, args.max_rss_mb, 600)
    )

    full = scoped(base, "full", args.partitions)
    try:
        await ensure_topics(full)
        started = time.perf_counter()
        produced = await produce_log(full, log_order(templates))
        produce_s = time.perf_counter() - started
        print(
            f"{produced.events:,} events ({produced.log_bytes / 1e6:,.1f} MB) produced in "
            f"{produce_s:.1f} s to {full.topic(CLINICAL_EVENTS)}",
            flush=True,
        )
        ends = await commit_to_end(full, full.consumer_group("grader"))
        grader = Grader(full)  # starting while the empty one is measured
        graders.append(grader)
        baseline = await baseline_run
        baseline.exit_code = empty_grader.stop()
        print(f"empty grader: {baseline.rss_mb:,.1f} MB resident, {baseline.hwm_mb:,.1f} MB peak")
        probes = {
            p: probe_event(s, s.split("-")[0], run_id) for p, s in sorted(produced.first_in.items())
        }
        measured = await measure(grader, full, "full", probes, args.max_rss_mb, args.timeout_s)
        try:
            if not measured.aborted:
                checked = sample(templates, probes, seed=demo.SEED)
                probed = {e.subject_id: encode_event(e) for e in probes.values()}
                subjects = {
                    s: events_of(templates, s) + ([probed[s]] if s in probed else [])
                    for s in checked
                }
                measured.explained = await check_explain(grader, subjects, protocol, ranges)
                _, measured.unknown_explain_s = await grader.explain_seconds("GZ01-UNKNOWN")
        finally:
            measured.exit_code = grader.stop()
    finally:
        for started in graders:
            started.stop()
        if args.keep:
            print(f"kept: topics {full.topic_namespace}*, {empty.topic_namespace}*")
        else:
            await delete_topics(full)
            await delete_topics(empty)

    state_ok = (
        not measured.aborted
        and measured.rebuilt_partitions == len(ends)
        and measured.rebuilt_subjects == count
        and measured.graded_probes == len(probes)
        and bool(measured.explained)
        and all(e["matches"] for e in measured.explained)
    )
    per_subject = (measured.rss_mb - baseline.rss_mb) * 1e6 / count
    notes = {
        "aborted": measured.aborted,
        "rebuild_s": round(measured.seconds, 1),
        "rebuilt_subjects": measured.rebuilt_subjects,
        "rebuilt_partitions": measured.rebuilt_partitions,
        "graded_probes": measured.graded_probes,
        "explained": measured.explained,
        "explain_of_a_subject_not_in_memory_s": round(measured.unknown_explain_s, 3),
        "state_check": state_ok,
        "grader_exit": measured.exit_code,
    }
    figures = [
        Figure(
            f"grader resident (VmRSS), {count:,} subjects",
            measured.rss_mb,
            "MB",
            baseline="empty grader",
            baseline_value=baseline.rss_mb,
            target=TARGET_MB,
            target_is="<=",
            notes=notes,
        ),
        Figure(
            "grader peak resident (VmHWM)",
            measured.hwm_mb,
            "MB",
            baseline="empty grader",
            baseline_value=baseline.hwm_mb,
        ),
        Figure("resident bytes per subject over empty", per_subject, "B/subject"),
        Figure("log: clinical events (keys + values)", produced.log_bytes / 1e6, "MB"),
        Figure("grader scratch files on disk (deleted, open)", measured.scratch_mb, "MB"),
        Figure("rebuild: probes sent -> all committed", measured.seconds, "s"),
    ]
    params = {
        "subjects": count,
        "template_subjects": n_templates,
        "events": produced.events,
        "partitions": len(ends),
        "max_rss_mb": args.max_rss_mb,
    }
    emit("grader memory", params, figures, args.json)
    print(
        f"  {count:,} subjects, {produced.events:,} events; rebuilt {measured.rebuilt_subjects:,}"
        f" subjects in {measured.rebuilt_partitions} partitions; probes graded "
        f"{measured.graded_probes}/{len(probes)}; explain "
        f"{sum(e['matches'] for e in measured.explained)}/{len(measured.explained)} as expected, "
        f"slowest {max((e['seconds'] for e in measured.explained), default=0):.3f} s (a subject "
        f"not in memory: {measured.unknown_explain_s:.3f} s)"
        + (f"; ABORTED: {measured.aborted}" if measured.aborted else "")
    )
    print(f"  state check: {'passed' if state_ok else 'FAILED'} (grader log: {grader.log_path})")
    return 0 if state_ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=48)
    parser.add_argument("--smoke", action="store_true", help="500 subjects, 6 partitions")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--max-rss-mb", type=float, default=8000.0)
    parser.add_argument("--timeout-s", type=float, default=3 * 3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the topics")
    args = parser.parse_args()
    if args.smoke:
        args.subjects, args.partitions = 500, 6
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
