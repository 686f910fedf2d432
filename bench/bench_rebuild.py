"""Read-model rebuild rate: `safetymon rebuild` over N realistic events on Kafka; prints figures.

    .venv/bin/python bench/bench_rebuild.py [--events 1000000] [--smoke] [--json PATH]
        [--database-url URL] [--workers N] [--keep]

The events are bench_dsmb_report's cohort (the demo's subjects through ingest's to_event and the
grader's own ledger, with adverse events, corrections, retractions and acknowledged alerts),
generated afresh on every run in `--workers` processes, whole subjects until at least `--events`.
They are published, keyed by subject id with their event_type header, to the three topics the
rebuild reads (clinical events, assessments, alerts) in a topic namespace of this run's own, by an
aiokafka producer configured as the services' (acks=all, idempotent), a batch of records enqueued
in order and then acknowledged together as shared/kafka.publish_events does. The read models live
in a scratch database on the PostgreSQL server of `--database-url` (default $DATABASE_URL).
Topics and database are removed at the end unless `--keep`. Nothing is cached between runs.

Timed, in this order, on the same broker and database:
  raw read           read_to_end over the three topics, records counted: the floor;
  raw read + decode  the same with decode_event on each record (what the rebuild reads);
  projection alone   Projector.project of the generated events, decoded beforehand (untimed),
                     in batches the size the raw read yielded, into empty read models: the
                     projection without Kafka;
  rebuild            services.dsmb.rebuild.rebuild, the function `safetymon rebuild` calls, on
                     the read models the projection filled (it empties them first), with a new
                     engine as the command makes; target >= 20,000 events/s.
The rebuild is checked: every event read and decoded, each read model's row count equal to the
distinct rows the generated events state, and each table's rows equal to the projection's
(count and a sum of row hashes). Exit 0 when it measured and the check passed, 1 when the check
failed.
"""

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from bench_dsmb_report import (  # noqa: E402
    DICTIONARY,
    cohort_subjects,
    scratch_database,
    subject_events,
)
from report import Figure, emit  # noqa: E402
from sqlalchemy import text  # noqa: E402

from services.alerts.db import create_engine, upgrade_schema  # noqa: E402
from services.demo import cohort as demo  # noqa: E402
from services.dsmb.projection import rows_of  # noqa: E402
from services.dsmb.projector import Projector  # noqa: E402
from services.dsmb.readmodels import READ_MODELS  # noqa: E402
from services.dsmb.rebuild import PROJECTED_TOPICS, rebuild  # noqa: E402
from shared.events import EventDecodeError, decode_event, encode_event  # noqa: E402
from shared.kafka import ensure_topics, kafka_client_kwargs, read_to_end  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.topics import ALL_TOPICS  # noqa: E402

TARGET_EVENTS_PER_S = 20_000.0
SMOKE_EVENTS = 20_000
CYCLES = 6  # bench_dsmb_report's default: about 190 events per subject
EVENTS_PER_SUBJECT_LOW = 150  # to size the cohort so it surely reaches --events
PUBLISH_BATCH = 10_000  # records enqueued before their acknowledgements are awaited


@dataclass
class Records:
    """One topic's records, as columns: a million tuples would be a million objects for the
    cyclic garbage collector to scan, and slow down whatever runs beside them."""

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    event_types: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    def extend(self, other: "Records") -> None:
        self.keys += other.keys
        self.values += other.values
        self.event_types += other.event_types


@dataclass
class SubjectOut:
    records: dict[str, Records]  # base topic name -> the subject's records on it
    rows: Counter[str]  # read-model table -> distinct rows the subject's events state


@dataclass
class Generated:
    records: dict[str, Records] = field(default_factory=dict)
    rows: Counter[str] = field(default_factory=Counter)
    subjects: int = 0
    events: int = 0
    seconds: float = 0.0


def encoded_subject(item: tuple[demo.Subject, int]) -> SubjectOut:
    """One subject's events, encoded for the log, and the rows they state. Runs in a worker:
    generation (the grader's ledger above all) is far slower than everything measured."""
    subject, cycles = item
    records = {topic: Records() for topic in PROJECTED_TOPICS}
    keys: dict[str, set[tuple[Any, ...]]] = {}
    for topic, event in subject_events(subject, cycles):
        records[topic].keys.append(event.subject_id.encode())
        records[topic].values.append(encode_event(event))
        records[topic].event_types.append(event.event_type.encode())
        for table, row in rows_of(event, DICTIONARY):
            primary = tuple(row.get(column.name, "") for column in table.primary_key.columns)
            keys.setdefault(table.name, set()).add(primary)
    return SubjectOut(records, Counter({name: len(k) for name, k in keys.items()}))


def generate(wanted: int, workers: int) -> Generated:
    """Whole subjects of the cohort until at least `wanted` events, in subject order."""
    started = time.perf_counter()
    out = Generated(records={topic: Records() for topic in PROJECTED_TOPICS})
    subjects = cohort_subjects(wanted // EVENTS_PER_SUBJECT_LOW + 20, CYCLES, demo.SEED)
    for subject in _in_order(encoded_subject, subjects, workers):
        for topic, records in subject.records.items():
            out.records[topic].extend(records)
            out.events += len(records)
        out.rows += subject.rows
        out.subjects += 1
        if out.events >= wanted:
            break
    else:
        raise SystemExit(f"the cohort gave only {out.events:,} events of {wanted:,}")
    out.seconds = time.perf_counter() - started
    return out


def _in_order(
    fn: Callable[[tuple[demo.Subject, int]], SubjectOut],
    items: Iterator[tuple[demo.Subject, int]],
    workers: int,
) -> Iterator[SubjectOut]:
    """fn over items in `workers` processes, results in input order; only a few tasks ahead of
    the consumer, so subjects past the last one wanted are hardly generated."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        pending: deque[Future[SubjectOut]] = deque()
        try:
            while True:
                while len(pending) < 4 * workers and (item := next(items, None)) is not None:
                    pending.append(pool.submit(fn, item))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


# ---------------------------------------------------------------------------------------------
# Kafka: the topics, publishing, the raw reads
# ---------------------------------------------------------------------------------------------


async def publish(settings: Settings, generated: Generated) -> float:
    """Every record on its topic; returns the seconds until the broker acknowledged them all."""
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), acks="all", enable_idempotence=True
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for topic, records in generated.records.items():
            name = settings.topic(topic)
            for start in range(0, len(records), PUBLISH_BATCH):
                batch = slice(start, start + PUBLISH_BATCH)
                pending = [
                    await producer.send(name, value, key=key, headers=[("event_type", kind)])
                    for key, value, kind in zip(
                        records.keys[batch],
                        records.values[batch],
                        records.event_types[batch],
                        strict=True,
                    )
                ]
                await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        await admin.delete_topics([settings.topic(name) for name in ALL_TOPICS])
    finally:
        await admin.close()


@dataclass
class Read:
    events: int = 0
    batches: int = 0
    undecodable: int = 0
    seconds: float = 0.0


async def raw_read(settings: Settings, decode: bool) -> Read:
    """read_to_end over the rebuild's topics as it reads them; with `decode`, decode_event too."""
    read = Read()
    started = time.perf_counter()
    for topic in PROJECTED_TOPICS:
        async for batch in read_to_end(settings, settings.topic(topic)):
            read.batches += 1
            read.events += len(batch)
            if decode:
                for record in batch:
                    try:
                        decode_event(record.value)
                    except EventDecodeError:
                        read.undecodable += 1
    read.seconds = time.perf_counter() - started
    return read


# ---------------------------------------------------------------------------------------------
# The database: projection alone, the rebuild, the check
# ---------------------------------------------------------------------------------------------


@dataclass
class Projected:
    events: int = 0
    rows: int = 0
    seconds: float = 0.0  # Projector.project only; decoding is not in it


async def project_alone(url: str, generated: Generated, batch: int) -> Projected:
    engine = create_engine(url)
    projector, out = Projector(engine, DICTIONARY), Projected()
    try:
        for records in generated.records.values():
            for start in range(0, len(records), batch):
                events = [decode_event(value) for value in records.values[start : start + batch]]
                began = time.perf_counter()
                out.rows += await projector.project(events)
                out.seconds += time.perf_counter() - began
                out.events += len(events)
    finally:
        await engine.dispose()
    return out


Digest = dict[str, tuple[int, int]]  # table -> (rows, sum of the rows' hashes)


async def digest(url: str) -> Digest:
    """Each read model's row count and the sum of its rows' hashes: equal sums of equal counts
    mean, but for a vanishing chance, equal rows."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            out = {}
            for table in READ_MODELS:
                query = f"SELECT count(*), coalesce(sum(hashtext(t::text)), 0) FROM {table.name} t"
                count, hashes = (await connection.execute(text(query))).one()
                out[table.name] = (int(count), int(hashes))
            return out
    finally:
        await engine.dispose()


@dataclass
class Rebuilt:
    events: int
    undecodable: int
    rows: int
    seconds: float  # wall time of the call
    own_seconds: float  # as RebuildResult reports it (what `safetymon rebuild` prints)
    cpu_seconds: float  # of this process: on a busy machine, what the rate would be unhindered


async def timed_rebuild(settings: Settings) -> Rebuilt:
    """As services/cli.py rebuild_read_models does it (the schema is already current)."""
    engine = create_engine(settings.database_url)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        result = await rebuild(settings, engine)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await engine.dispose()
    return Rebuilt(result.events, result.undecodable, result.rows, seconds, result.seconds, cpu)


def check(generated: Generated, rebuilt: Rebuilt, projected: Digest, after: Digest) -> list[str]:
    """What is wrong with the rebuild; nothing when it is right."""
    problems = []
    if rebuilt.events != generated.events or rebuilt.undecodable:
        problems.append(
            f"rebuild read {rebuilt.events:,} events ({rebuilt.undecodable} undecodable) "
            f"of {generated.events:,} published"
        )
    for table in READ_MODELS:
        expected, rows = generated.rows[table.name], after[table.name][0]
        if rows != expected:
            problems.append(f"{table.name}: {rows:,} rows, the events state {expected:,}")
        if after[table.name] != projected[table.name]:
            problems.append(f"{table.name}: rows differ from the projection of the events")
    return problems


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, generated: Generated
) -> tuple[list[Figure], dict[str, Any], int]:
    namespace = f"bench-rebuild-{uuid.uuid4().hex[:10]}."
    async with scratch_database(args.database_url, "rebuild", args.keep) as url:
        await asyncio.to_thread(upgrade_schema, url)
        settings = Settings(TOPIC_NAMESPACE=namespace, DATABASE_URL=url)  # the rest from the env
        await ensure_topics(settings)
        try:
            publish_s = await publish(settings, generated)
            print(f"published in {publish_s:.1f} s to {namespace}*", flush=True)
            raw = await raw_read(settings, decode=False)
            decoded = await raw_read(settings, decode=True)
            batch = max(1, round(raw.events / max(raw.batches, 1)))
            projected = await project_alone(url, generated, batch)
            projected_digest = await digest(url)
            by_topic = {topic: len(records) for topic, records in generated.records.items()}
            # The command starts without a gigabyte of records in its process: nor should the
            # rebuild measured here.
            generated.records.clear()
            gc.collect()
            rebuilt = await timed_rebuild(settings)
            problems = check(generated, rebuilt, projected_digest, await digest(url))
        finally:
            if args.keep:
                print(f"kept: topics {namespace}*, database {url}")
            else:
                await delete_topics(settings)
    rows = {name: counts[0] for name, counts in projected_digest.items()}
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    if not problems:
        print(
            f"check passed: {rebuilt.events:,} events read and decoded, {sum(rows.values()):,} "
            f"rows in {len(rows)} read models, each as the events state and as projected"
        )
    params = {
        "events": generated.events,
        "events_wanted": args.events,
        "subjects": generated.subjects,
        "events_by_topic": by_topic,
        "read_model_rows": rows,
        "partitions": settings.topic_partitions,
        "generate_s": round(generated.seconds, 2),
        "workers": args.workers,
        "publish_s": round(publish_s, 2),
        "read_batches": raw.batches,
        "projection_batch": batch,
        "check": {"passed": not problems, "problems": problems},
    }
    figures = figures_of(raw, decoded, projected, rebuilt, not problems)
    return figures, params, 1 if problems else 0


def figures_of(
    raw: Read, decoded: Read, projected: Projected, rebuilt: Rebuilt, passed: bool
) -> list[Figure]:
    raw_rate = raw.events / raw.seconds
    decode_rate = decoded.events / decoded.seconds
    rebuild_rate = rebuilt.events / rebuilt.seconds
    return [
        Figure("raw read (read_to_end, 3 topics)", raw_rate, "events/s"),
        Figure("raw read + decode_event", decode_rate, "events/s", "raw read", raw_rate),
        Figure(
            "projection alone (Projector.project)",
            projected.events / projected.seconds,
            "events/s",
            "raw read + decode",
            decode_rate,
            notes={"rows": projected.rows, "seconds": projected.seconds},
        ),
        Figure(
            "rebuild (safetymon rebuild)",
            rebuild_rate,
            "events/s",
            "raw read + decode",
            decode_rate,
            target=TARGET_EVENTS_PER_S,
            notes={
                "seconds": rebuilt.seconds,
                "own_seconds": rebuilt.own_seconds,
                "cpu_seconds": rebuilt.cpu_seconds,
                "rows": rebuilt.rows,
                "vs_raw_read": rebuild_rate / raw_rate,
                "check_passed": passed,
            },
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_EVENTS:,} events")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL server to make the scratch database on (default $DATABASE_URL)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="generating")
    parser.add_argument("--keep", action="store_true", help="keep the topics and the database")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events = SMOKE_EVENTS
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url (or $DATABASE_URL): postgresql+asyncpg://...")
    print(f"read-model rebuild benchmark: {args.events:,} events; Python {sys.version.split()[0]}")
    # Before any event loop or Kafka client exists: the workers are forked.
    generated = generate(args.events, args.workers)
    print(
        f"generated {generated.events:,} events of {generated.subjects:,} subjects in "
        f"{generated.seconds:.1f} s ({args.workers} processes)",
        flush=True,
    )
    figures, params, status = asyncio.run(measure(args, generated))
    emit("read-model rebuild", params, figures, args.json)
    return status


if __name__ == "__main__":
    sys.exit(main())
