"""Throughput of an SDTM LB import through the live pipeline; prints figures, no asserts.

    .venv/bin/python bench/bench_sdtm_import.py [--rows 50000] [--json PATH]

Needs the local broker and PostgreSQL (`bash scripts/kafka start`, `bash scripts/postgres start`;
KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL as they print). Starts the four services as processes
in a topic namespace of their own, enrols the 43 demo subjects (interop/NCT05173246.enrolment.csv
maps their USUBJIDs), then, timed:

  import     `safetymon import lb.csv`: a generated LB dataset of `--rows` rows (day-1 and
             day-8 panels of ten tests over as many cycles as it takes, SI units with reference
             ranges, +08:00 collection times), read, sent in slices and acknowledged by Kafka;
  graded     from the start of the import until the grader has graded every imported result
             (LabGraded events on the assessments topic, by cause);
  baseline   afterwards, the same results as JSON, 1,000 per request to /v1/labs/batch (the
             JSON API), until ingest has acknowledged them (their grading is not awaited).
Rows per second for each, and the import as a ratio of the baseline.
"""

import argparse
import asyncio
import csv
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.demo.cohort import build_cohort  # noqa: E402
from services.demo.processes import (  # noqa: E402
    EXAMPLE_EDC_TOKEN,
    Services,
    service_environment,
)
from services.demo.smtp_sink import SmtpSink  # noqa: E402
from services.ingest.domain import event_id_of  # noqa: E402
from services.ingest.interop.importer import import_files  # noqa: E402
from shared.events import Source  # noqa: E402
from shared.kafka import kafka_client_kwargs  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from shared.topics import ASSESSMENTS  # noqa: E402

CHINA = timezone(timedelta(hours=8))
# The services run with the example senders file: post as its `edc` (every site).
SENDER = {"Authorization": f"Bearer {EXAMPLE_EDC_TOKEN}"}
# LBTESTCD, SI unit, LLN, ULN, typical low, typical high
PANEL = [
    ("WBC", "10^9/L", 3.5, 9.5, 2.5, 9.0),
    ("NEUT", "10^9/L", 1.8, 6.3, 0.8, 6.0),
    ("PLAT", "10^9/L", 125, 350, 60, 320),
    ("HGB", "g/L", 130, 175, 80, 150),
    ("ALT", "U/L", 9, 50, 10, 140),
    ("AST", "U/L", 15, 40, 12, 120),
    ("BILI", "umol/L", 3.4, 20.5, 4, 40),
    ("CREAT", "umol/L", 57, 111, 50, 160),
    ("K", "mmol/L", 3.5, 5.3, 3.0, 5.6),
    ("SODIUM", "mmol/L", 137, 147, 128, 146),
]
COLUMNS = (
    "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBSTNRLO,LBSTNRHI,VISIT,LBDTC"
).split(",")


def subjects() -> list[tuple[str, str]]:
    """(subject id, USUBJID) of the enrolment map."""
    with (ROOT / "interop" / "NCT05173246.enrolment.csv").open() as stream:
        return [(row["subject_id"], row["usubjid"]) for row in csv.DictReader(stream)]


def lb_rows(count: int, seed: int = 5173246) -> list[dict[str, str]]:
    rng, rows, seq = random.Random(seed), [], 0
    cohort = subjects()
    cycle = 0
    while len(rows) < count:
        cycle += 1
        for n, (_, usubjid) in enumerate(cohort):
            for day in (1, 8):
                start = datetime(2025, 3, 3, 7, 30, tzinfo=CHINA) + timedelta(days=4 * n)
                collected = start + timedelta(days=21 * (cycle - 1) + day - 1)
                for code, unit, low, high, lo, hi in PANEL:
                    seq += 1
                    value = f"{rng.uniform(lo, hi):.3g}"
                    rows.append(
                        dict(
                            zip(
                                COLUMNS,
                                [
                                    "NCT05173246",
                                    "LB",
                                    usubjid,
                                    str(seq),
                                    code,
                                    value,
                                    value,
                                    unit,
                                    str(low),
                                    str(high),
                                    f"C{min(cycle, 100)}D{day}",
                                    collected.isoformat(),
                                ],
                                strict=True,
                            )
                        )
                    )
    return rows[:count]


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def as_json_labs(rows: list[dict[str, str]], ids: dict[str, str]) -> list[dict]:
    return [
        {
            "subject_id": ids[row["USUBJID"]],
            "site_id": ids[row["USUBJID"]].split("-")[0],
            "test": row["LBTESTCD"],
            "value": float(row["LBSTRESN"]),
            "unit": row["LBSTRESU"],
            "reference_low": float(row["LBSTNRLO"]),
            "reference_high": float(row["LBSTNRHI"]),
            "collected_at": row["LBDTC"],
            "source_system": "bench-json",
            "source_message_id": f"json-{row['LBSEQ']}",
        }
        for row in rows
    ]


async def post_json_baseline(ingest: str, labs: list[dict]) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=ingest, timeout=120) as client:
        for i in range(0, len(labs), 1000):
            response = await client.post("/v1/labs/batch", json=labs[i : i + 1000], headers=SENDER)
            response.raise_for_status()
    return time.perf_counter() - started


async def enrol(ingest: str) -> None:
    enrolments = [s.body for s in build_cohort() if s.endpoint == "/v1/enrolments"]
    async with httpx.AsyncClient(base_url=ingest, timeout=60) as client:
        response = await client.post("/v1/enrolments/batch", json=enrolments, headers=SENDER)
        response.raise_for_status()


def imported_ids(data: list[dict[str, str]]) -> set[str]:
    """The event ids ingest derives from the rows (the import's results, not the baseline's)."""
    return {
        str(
            event_id_of(
                "LabResultReported",
                row["STUDYID"],
                Source(
                    system=f"sdtm:{row['STUDYID']}",
                    message_id=f"LB|{row['USUBJID']}|{row['LBSEQ']}",
                ),
            )
        )
        for row in data
    }


async def graded_count(bootstrap: str, topic: str, expected: set[str]) -> int:
    """How many of the `expected` lab results the grader has graded (LabGraded events by
    cause), waiting until all are or 15 minutes have passed."""
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": bootstrap})
    consumer = AIOKafkaConsumer(
        topic, **kafka_client_kwargs(settings), auto_offset_reset="earliest"
    )
    await consumer.start()
    causes: set[str] = set()
    deadline = time.monotonic() + 900
    try:
        while len(causes) < len(expected) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10000)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["event_type"] == "LabGraded" and event["causation_id"] in expected:
                        causes.add(event["causation_id"])
    finally:
        await consumer.stop()
    return len(causes)


async def run(rows: int) -> dict[str, float]:
    settings = get_settings()
    sink = SmtpSink()
    sink.start()
    namespace = f"bench-sdtm-{time.time_ns()}."
    env = service_environment(
        bootstrap=settings.kafka_bootstrap_servers,
        database_url=settings.database_url,
        namespace=namespace,
        smtp_port=sink.port,
        SESSION_SECRET="bench-" + "x" * 32,
        USERS_FILE=str(ROOT / "deploy" / "users.example.yaml"),
    )
    work = ROOT / ".local" / "bench-sdtm"
    work.mkdir(parents=True, exist_ok=True)
    services = Services(env, work / "logs")
    services.start()
    try:
        await services.wait_healthy()
        ingest = services.urls["ingest"]
        await enrol(ingest)
        data = lb_rows(rows)
        lb = work / "lb.csv"
        write_csv(data, lb)
        started = time.perf_counter()
        [result] = await asyncio.to_thread(
            import_files, [lb], ingest, None, work, token=EXAMPLE_EDC_TOKEN
        )
        import_s = time.perf_counter() - started
        graded = await graded_count(
            settings.kafka_bootstrap_servers, f"{namespace}{ASSESSMENTS}", imported_ids(data)
        )
        graded_s = time.perf_counter() - started
        ids = {usubjid: subject for subject, usubjid in subjects()}
        baseline_s = await post_json_baseline(ingest, as_json_labs(data, ids))
    finally:
        services.stop()
        sink.stop()
    return {
        "rows": rows,
        "accepted": result.accepted,
        "rejected": len(result.rejected),
        "baseline_json_rows_per_s": rows / baseline_s,
        "import_rows_per_s": rows / import_s,
        "import_vs_baseline": baseline_s / import_s,
        "graded_results": graded,
        "graded_rows_per_s": rows / graded_s,
        "import_s": import_s,
        "graded_s": graded_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows))
    print(f"SDTM LB import through the live pipeline, {args.rows:,} rows ({datetime.now(UTC):%F})")
    print(f"  accepted / rejected           {figures['accepted']:,} / {figures['rejected']:,}")
    print(
        f"  safetymon import lb.csv       {figures['import_rows_per_s']:>10,.0f} rows/s "
        f"({figures['import_s']:.1f} s; x{figures['import_vs_baseline']:.2f} of the baseline)"
    )
    print(
        f"  imported and graded           {figures['graded_rows_per_s']:>10,.0f} rows/s "
        f"({figures['graded_s']:.1f} s; {figures['graded_results']:,} results graded)"
    )
    print(f"  baseline: JSON /v1/labs/batch {figures['baseline_json_rows_per_s']:>10,.0f} rows/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
