"""`safetymon demo`: the synthetic cohort through the live pipeline, end to end.

Starts (or reuses) the local Kafka broker, an SMTP sink, and the services as processes; posts
the cohort to ingest over HTTP; shows alerts as the alert service stores them; prints a summary;
writes the DSMB report as of now; stops everything it started.
"""

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
from collections import Counter
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.demo.cohort import Submission, build_cohort
from services.demo.processes import EXAMPLE_EDC_TOKEN, Services, service_environment
from services.demo.smtp_sink import SmtpSink
from services.dsmb.report import report_from_database
from shared.events import EventDecodeError, decode_event
from shared.kafka import kafka_client_kwargs
from shared.protocol import study_protocol
from shared.settings import get_settings
from shared.topics import ALERTS, ASSESSMENTS

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_USERS = REPO_ROOT / "deploy" / "users.example.yaml"
# The published throwaway token of safety-physician-01 in that file (local use only).
DEMO_PHYSICIAN = {"Authorization": "Bearer local-only-token-safety-physician-01-not-for-production"}
# The demo submits as the example senders file's `edc` (every site; a local-only token).
DEMO_SENDER = {"Authorization": f"Bearer {EXAMPLE_EDC_TOKEN}"}
WORK_DIR = REPO_ROOT / ".local" / "demo"
BATCH_SIZE = 100
SETTLE_TIMEOUT_S = 180.0
SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow"}
console = Console()


def start_local_kafka() -> tuple[str, bool]:
    """The bootstrap address, and whether this run started the broker (so must stop it)."""
    script = REPO_ROOT / "scripts" / "kafka"
    was_running = subprocess.run([script, "status"], capture_output=True).returncode == 0
    console.print("[dim]starting the local Kafka broker (scripts/kafka start)...[/dim]")
    started = time.monotonic()
    result = subprocess.run([script, "start"], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/kafka start failed:\n{result.stderr[-3000:]}")
    bootstrap = result.stdout.strip().splitlines()[-1].split("=", 1)[1]
    console.print(
        f"Kafka ready at {bootstrap} in {time.monotonic() - started:.1f} s"
        + (" (already running)" if was_running else "")
    )
    return bootstrap, not was_running


def stop_local_kafka() -> None:
    subprocess.run([REPO_ROOT / "scripts" / "kafka", "stop"], capture_output=True)


class Tally:
    """What came out of the pipeline, read back from the Kafka topics."""

    def __init__(self) -> None:
        self.grades: Counter[tuple[str, str]] = Counter()
        self.decisions: Counter[tuple[str, str, str]] = Counter()
        self.alert_ids: set[str] = set()
        self.graded_labs: set[str] = set()  # lab results with at least one grade
        self._seen: set[str] = set()  # a redelivered event counts once

    def add(self, raw: bytes) -> None:
        try:
            event = decode_event(raw)
        except EventDecodeError:
            return
        if str(event.event_id) in self._seen:
            return
        self._seen.add(str(event.event_id))
        p = event.payload
        if event.event_type == "LabGraded":
            self.graded_labs.add(str(p.lab_event_id))
            self.grades[(p.term, "undecided" if p.grade is None else str(p.grade))] += 1
        elif event.event_type == "DoseDecisionMade":
            for action in p.actions:
                self.decisions[(p.rule_id, action.drug.value, action.action.value)] += 1
        elif event.event_type == "AlertRaised":
            self.alert_ids.add(str(p.alert_id))


@asynccontextmanager
async def tally_from_topics(bootstrap: str, namespace: str, tally: Tally):
    # The services' Kafka security settings (KAFKA_SECURITY_PROTOCOL, ...), on this run's broker.
    settings = get_settings().model_copy(update={"kafka_bootstrap_servers": bootstrap})
    consumer = AIOKafkaConsumer(
        f"{namespace}{ASSESSMENTS}",
        f"{namespace}{ALERTS}",
        **kafka_client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()

    async def pump() -> None:
        async for record in consumer:
            tally.add(record.value)

    task = asyncio.create_task(pump())
    try:
        yield tally
    finally:
        task.cancel()
        await consumer.stop()


async def post_cohort(
    client: httpx.AsyncClient, ingest: str, cohort: list[Submission], progress: Progress, on_batch
) -> Counter[str]:
    posted: Counter[str] = Counter()
    bar = progress.add_task("posting to ingest", total=len(cohort))
    i = 0
    while i < len(cohort):
        endpoint = cohort[i].endpoint
        batch = [cohort[i]]
        while (
            i + len(batch) < len(cohort)
            and len(batch) < BATCH_SIZE
            and cohort[i + len(batch)].endpoint == endpoint
        ):
            batch.append(cohort[i + len(batch)])
        response = await client.post(
            f"{ingest}{endpoint}/batch", json=[s.body for s in batch], headers=DEMO_SENDER
        )
        if response.status_code != 202:
            raise RuntimeError(f"ingest refused a batch: {response.status_code} {response.text}")
        posted[endpoint] += len(batch)
        i += len(batch)
        progress.advance(bar, len(batch))
        await on_batch()
    return posted


class AlertFeed:
    """Prints the alerts this run raised as the alert service stores them, and follows their
    notification (an alert already stored by an earlier run against the same database is not
    emailed again: ids are deterministic)."""

    def __init__(self, client: httpx.AsyncClient, alerts_url: str, tally: "Tally") -> None:
        self.client, self.url, self.tally = client, alerts_url, tally
        self.seen: dict[str, dict] = {}
        self.notified: set[str] = set()

    async def poll(self) -> None:
        for alert_id in sorted(self.tally.alert_ids - self.notified):
            response = await self.client.get(
                f"{self.url}/v1/alerts/{alert_id}", headers=DEMO_PHYSICIAN
            )
            if response.status_code != 200:
                continue  # raised, not stored yet
            alert = response.json()
            if alert_id not in self.seen:
                self.seen[alert_id] = alert
                self._print(alert)
            if alert["notifications"] and all(
                n["status"] == "sent" for n in alert["notifications"]
            ):
                self.notified.add(alert_id)

    @property
    def settled(self) -> bool:
        return self.notified == self.tally.alert_ids

    @staticmethod
    def _print(alert: dict) -> None:
        style = SEVERITY_STYLE.get(alert["severity"], "")
        console.print(
            f"[{style}]ALERT {alert['severity'].upper():8}[/{style}] "
            f"{alert['occurred_at'][:10]}  {alert['title']}"
        )


async def wait_until(condition, timeout_s: float, step) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await step()
        if condition():
            return True
        await asyncio.sleep(0.5)
    return False


def summary(
    posted: Counter[str], tally: Tally, feed: AlertFeed, emails: int, elapsed: float
) -> None:
    table = Table(title="Events in", show_header=False)
    for endpoint, count in sorted(posted.items()):
        table.add_row(endpoint, str(count))
    table.add_row("total", str(sum(posted.values())))
    console.print(table)
    grades = Table(title="CTCAE v4.03 grades (LabGraded)")
    grades.add_column("term")
    for grade in ("0", "1", "2", "3", "4", "undecided"):
        grades.add_column(grade, justify="right")
    for term in sorted({t for t, _ in tally.grades}):
        grades.add_row(
            term,
            *[str(tally.grades.get((term, g), "")) for g in ("0", "1", "2", "3", "4", "undecided")],
        )
    console.print(grades)
    decisions = Table(title="Dose decisions")
    for column in ("rule", "drug", "action", "count"):
        decisions.add_column(column)
    for (rule, drug, action), count in sorted(tally.decisions.items()):
        decisions.add_row(rule, drug, action, str(count))
    console.print(decisions)
    by_severity = Counter(a["severity"] for a in feed.seen.values())
    console.print(
        f"Alerts raised {len(tally.alert_ids)}, stored {len(feed.seen)} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_severity.items()))}); "
        f"emails received by the SMTP sink {emails}; wall time {elapsed:.1f} s"
        + (
            f"\n({len(tally.alert_ids) - emails} alerts were already stored by an earlier run "
            "against this database, so were not emailed again)"
            if emails < len(tally.alert_ids)
            else ""
        )
    )


async def acknowledge_first_critical(client: httpx.AsyncClient, url: str, feed: AlertFeed) -> None:
    critical = [a for a in feed.seen.values() if a["severity"] == "critical"]
    if not critical:
        return
    alert = critical[0]
    response = await client.post(
        f"{url}/v1/alerts/{alert['alert_id']}/acknowledge",
        json={"comment": "Site contacted; SAE form due."},
        headers=DEMO_PHYSICIAN,
    )
    state = response.json().get("status") if response.status_code == 200 else response.text
    console.print(f"acknowledged '{alert['title']}' as safety-physician-01 -> {state}")


async def wait_for_projection(
    client: httpx.AsyncClient, dsmb_url: str, alerts: int, timeout_s: float = 60.0
) -> None:
    """Until the DSMB read models hold every stored alert and their row counts stop moving."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        counts = (await client.get(f"{dsmb_url}/v1/dsmb/read-models")).json()
        if counts == last and counts["dsmb_alerts"] >= alerts:
            return
        last = counts
        await asyncio.sleep(1.0)
    raise RuntimeError(f"the DSMB projection did not catch up in {timeout_s:.0f} s")


async def run(subjects: int, cycles: int, seed: int) -> int:
    started = time.monotonic()
    cohort = build_cohort(subjects, cycles, seed)
    stop_kafka = False
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    else:
        bootstrap, stop_kafka = start_local_kafka()
    shutil.rmtree(WORK_DIR / "db", ignore_errors=True)
    database_url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{WORK_DIR}/db/demo.db"
    namespace = f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}."
    sink = SmtpSink()
    services = None
    try:
        sink.start()
        env = service_environment(
            bootstrap=bootstrap,
            database_url=database_url,
            namespace=namespace,
            smtp_port=sink.port,
            # The demo's users: the published local-only example file, a fresh session key.
            USERS_FILE=os.environ.get("USERS_FILE", str(DEMO_USERS)),
            SESSION_SECRET=os.environ.get("SESSION_SECRET", secrets.token_urlsafe(48)),
            SESSION_COOKIE_SECURE="false",
            LOG_LEVEL="WARNING",
        )
        services = Services(env, WORK_DIR / "logs")
        urls = services.urls
        console.print(
            f"database {database_url.split('@')[-1]}; topics {namespace}*; "
            f"SMTP sink 127.0.0.1:{sink.port}; logs {WORK_DIR}/logs"
        )
        services.start()
        await services.wait_healthy()
        console.print("services healthy: " + ", ".join(f"{k} {v}" for k, v in urls.items()))
        tally = Tally()
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(tally_from_topics(bootstrap, namespace, tally))
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=60.0))
            feed = AlertFeed(client, urls["alerts"], tally)
            progress = stack.enter_context(
                Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                )
            )
            posted = await post_cohort(client, urls["ingest"], cohort, progress, feed.poll)
            labs = posted["/v1/labs"]
            settled = await wait_until(
                lambda: len(tally.graded_labs) >= labs and feed.settled,
                SETTLE_TIMEOUT_S,
                feed.poll,
            )
            progress.stop()
            await acknowledge_first_critical(client, urls["alerts"], feed)
            summary(posted, tally, feed, sink.count, time.monotonic() - started)
            if not settled:
                console.print("[bold red]the pipeline did not settle in time[/bold red]")
                return 1
            await wait_for_projection(client, urls["dsmb"], len(feed.seen))
            settings = get_settings()
            protocol = study_protocol(settings.study_id, settings.protocol_file)
            report = await report_from_database(
                database_url, datetime.now(UTC), protocol, WORK_DIR / "dsmb-report"
            )
            console.print(f"DSMB report as of now: [bold]{report.html}[/bold]")
            (WORK_DIR / "last-run.json").write_text(
                json.dumps(
                    {
                        "events_in": sum(posted.values()),
                        "labs_graded": len(tally.graded_labs),
                        "alerts": len(feed.seen),
                        "emails": sink.count,
                    }
                )
            )
        return 0
    finally:
        if services:
            services.stop()
        sink.stop()
        if stop_kafka:
            stop_local_kafka()


def run_demo(subjects: int = 43, cycles: int = 4, seed: int = 5173246) -> int:
    return asyncio.run(run(subjects, cycles, seed))
