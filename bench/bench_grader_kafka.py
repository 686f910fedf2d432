"""Throughput of the grader service through Kafka against a raw aiokafka pass-through of the same
messages, on the same broker in the same run; prints figures, no asserts.

    .venv/bin/python bench/bench_grader_kafka.py [--subjects 1000] [--cycles 4] [--smoke]
        [--json PATH] [--profile DIR [--profile-raw]]

Needs the local broker (`bash scripts/kafka start`; KAFKA_BOOTSTRAP_SERVERS as it prints). The
demo cohort of `--subjects` subjects over `--cycles` cycles (enrolment, doses, lab panels, adverse
events: the events ingest publishes for them, ~93 per subject) is encoded once and written to
the clinical-events topic of five topic namespaces. Then, each in processes of its own:

  baseline  a plain aiokafka loop: fetch up to 500 records, produce each again to an output
            topic keyed as it came (acks=all, idempotent), await the acknowledgements, commit;
            run first and again last, the faster of the two taken (a broker just started is
            slow at first: 16,878 events/s in one first run, 25,000-27,500 otherwise);
  codec     the same loop, each record decoded into its event model and encoded again (what
            any consumer of the event envelope pays before doing anything with an event);
  grader    the grader service as deployed (`safetymon serve grader`): decodes, grades, applies
            the protocol, publishes grades, decisions and alerts;
  scale-out two graders started together in one consumer group, the topic's partitions shared
            between them (how the grader is scaled: deploy/k8s/base/grader-hpa.yaml); the
            rebalance as the second joins and its rebuild of the partitions it takes over
            are part of what is measured.

All are measured the same way from outside: the consumer group's committed offsets read every
50 ms, events per second from its first commit to the last (start-up and group join left out).
The grader's rate is also given as a ratio of the baseline's (target >= 0.5), the two graders'
as a ratio of the one's. `--profile DIR` runs the (single) grader under py-spy (a flame graph,
or collapsed stacks with --profile-raw).
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import Figure, emit  # noqa: E402
from services.common.net import free_port  # noqa: E402
from services.demo.cohort import build_cohort, cohort_events  # noqa: E402
from services.demo.processes import service_environment  # noqa: E402
from shared.events import decode_event, encode_event  # noqa: E402
from shared.kafka import consumer_lag, ensure_topics, kafka_client_kwargs, read_to_end  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS  # noqa: E402

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers
PASSTHROUGH_GROUP = "bench-passthrough"


def encoded_cohort(subjects: int, cycles: int) -> list[Record]:
    events = cohort_events(build_cohort(subjects, cycles))
    return [
        (e.subject_id.encode(), encode_event(e), [("event_type", e.event_type.encode())])
        for e in events
    ]


def scoped(settings: Settings, name: str) -> Settings:
    return settings.model_copy(update={"topic_namespace": f"bench-{name}-{time.time_ns()}."})


async def produce(settings: Settings, topic: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def take_rate(settings: Settings, group: str, topic: str, total: int) -> float:
    """Events per second `group` takes `topic` at: from its first commit to its last, read
    from the broker's committed offsets every 50 ms (the same outside view of both sides)."""
    first: tuple[float, int] | None = None
    untouched = time.perf_counter()  # the last reading with nothing committed yet
    while True:
        lag = sum((await consumer_lag(settings, group, topic)).values())
        now = time.perf_counter()
        if first is None:
            if lag < total:
                first = (now, lag)
            else:
                untouched = now
        if lag == 0:
            break
        await asyncio.sleep(0.05)
    assert first is not None
    started, lag_then = first
    if now == started:  # all taken between two readings (a smoke run): from the one before
        started, lag_then = untouched, total
    return lag_then / (now - started)


async def carry(settings: Settings, total: int, codec: bool = False) -> None:
    """The baseline (run in a process of its own): consume -> produce -> commit until `total`
    records were carried from the clinical-events topic to the assessments topic; with `codec`,
    each decoded into its event and encoded again on the way."""
    source, target = settings.topic(CLINICAL_EVENTS), settings.topic(ASSESSMENTS)
    consumer = AIOKafkaConsumer(
        source,
        **kafka_client_kwargs(settings),
        group_id=settings.consumer_group(PASSTHROUGH_GROUP),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    await consumer.start()
    carried = 0
    try:
        while carried < total:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            sent = [
                await producer.send(
                    target,
                    encode_event(decode_event(r.value)) if codec else r.value,
                    key=r.key,
                    headers=list(r.headers),
                )
                for records in batches.values()
                for r in records
            ]
            await asyncio.gather(*sent)
            if sent:
                await consumer.commit()
            carried += len(sent)
    finally:
        await consumer.stop()
        await producer.stop()


ConsumerProcess = tuple[list[str], dict[str, str], Path]  # command, environment, log file


async def run_side(
    settings: Settings, records: list[Record], group: str, *consumers: ConsumerProcess
) -> float:
    """Fill a topic namespace's clinical events with `records`, start the `consumers` (processes
    in `group`) together and measure the rate the group takes the events at."""
    await ensure_topics(settings)
    await produce(settings, settings.topic(CLINICAL_EVENTS), records)
    processes = [start(command, env, log) for command, env, log in consumers]
    try:
        topic = settings.topic(CLINICAL_EVENTS)
        group_id = settings.consumer_group(group)
        return await asyncio.wait_for(take_rate(settings, group_id, topic, len(records)), 1800)
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)  # a clean stop for the service and for py-spy
        for process in processes:
            process.wait(timeout=60)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def carry_command(settings: Settings, total: int, *options: str) -> list[str]:
    """The baseline's process: `carry` of `settings`' topic namespace."""
    namespace = settings.topic_namespace
    return [sys.executable, __file__, "--carry", namespace, "--total", str(total), *options]


def grader_command(settings: Settings, port: int) -> tuple[list[str], dict[str, str]]:
    env = service_environment(
        bootstrap=settings.kafka_bootstrap_servers,
        database_url=settings.database_url,
        namespace=settings.topic_namespace,
        smtp_port=1,
        GRADER_PORT=str(port),
    )
    return [sys.executable, "-m", "services.cli", "serve", "grader"], env


async def _published(settings: Settings, topic: str) -> int:
    """The distinct events on `topic` (a batch delivered again after a rebalance may have
    some published twice, with the same ids)."""
    ids = set()
    async for batch in read_to_end(settings, topic):
        ids.update(decode_event(record.value).event_id for record in batch)
    return len(ids)


async def carry_raw(settings: Settings, records: list[Record], logs: Path) -> float:
    """The baseline's rate, in a topic namespace of its own."""
    raw = scoped(settings, "passthrough")
    carrier = (carry_command(raw, len(records)), dict(os.environ), logs / "carry.log")
    return await run_side(raw, records, PASSTHROUGH_GROUP, carrier)


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    started = time.perf_counter()
    records = encoded_cohort(args.subjects, args.cycles)
    n = len(records)
    print(
        f"{n:,} events of {args.subjects:,} subjects over {args.cycles} cycles "
        f"encoded in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    logs = ROOT / ".local" / "bench-grader"
    logs.mkdir(parents=True, exist_ok=True)
    first_baseline = await carry_raw(settings, records, logs)
    codec = scoped(settings, "codec")
    carrier = (carry_command(codec, n, "--codec"), dict(os.environ), logs / "codec.log")
    decoded = await run_side(codec, records, PASSTHROUGH_GROUP, carrier)
    graded = scoped(settings, "grader")
    command, env = grader_command(graded, free_port())
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        raw_format = ["--format", "raw"] if args.profile_raw else []
        out = args.profile / ("grader.txt" if args.profile_raw else "grader.svg")
        command = ["py-spy", "record", "--rate", "50", *raw_format, "-o", str(out), "--", *command]
    grader = await run_side(graded, records, "grader", (command, env, logs / "grader.log"))
    assessments = await _published(graded, graded.topic(ASSESSMENTS))
    alerts = await _published(graded, graded.topic(ALERTS))
    if assessments == 0:
        print(f"the grader published nothing: see {logs}/grader.log", file=sys.stderr)
        return 1
    shared = scoped(settings, "scale-out")
    graders = [(*grader_command(shared, free_port()), logs / f"grader-{i}.log") for i in (1, 2)]
    scaled = await run_side(shared, records, "grader", *graders)
    scaled_out = await _published(shared, shared.topic(ASSESSMENTS))
    baselines = [first_baseline, await carry_raw(settings, records, logs)]
    baseline = max(baselines)  # the ratios are not flattered by a broker still warming up
    figures = [
        Figure(
            "raw aiokafka consume -> produce -> commit",
            baseline,
            "events/s",
            notes={"first_and_last_run": baselines},
        ),
        Figure(
            "the same, each event decoded and encoded again",
            decoded,
            "events/s",
            baseline="raw pass-through",
            baseline_value=baseline,
        ),
        Figure(
            "grader service through Kafka",
            grader,
            "events/s",
            baseline="raw pass-through",
            baseline_value=baseline,
            target=0.5,
            target_on="ratio",
            notes={"assessments_out": assessments, "alerts_out": alerts},
        ),
        Figure(
            "two graders sharing the topic's partitions",
            scaled,
            "events/s",
            baseline="one grader",
            baseline_value=grader,
            notes={"assessments_out": scaled_out, "cpus": os.cpu_count()},
        ),
    ]
    params = {"subjects": args.subjects, "cycles": args.cycles, "events": n}
    params["partitions"] = settings.topic_partitions
    emit("grader through Kafka", params, figures, args.json)
    print(f"  grader: {assessments:,} assessments and {alerts:,} alerts out of {n:,} events")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--smoke", action="store_true", help="a tiny run, to prove it works")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="run the grader under py-spy, output here")
    parser.add_argument("--profile-raw", action="store_true", help="collapsed stacks, not SVG")
    parser.add_argument("--carry", metavar="NAMESPACE", help=argparse.SUPPRESS)  # the baseline
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--codec", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.carry:
        settings = get_settings().model_copy(update={"topic_namespace": args.carry})
        asyncio.run(carry(settings, args.total, args.codec))
        return 0
    if args.smoke:
        args.subjects, args.cycles = 30, 4
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
