"""The dashboards and alert rules against a real Prometheus (Debian's binary) scraping the four
services, run as processes on the real Kafka broker and PostgreSQL, every second.

Prometheus runs deploy/prometheus/prometheus.yml with only the targets (the services' actual ports)
and the intervals (1 s) changed, and the rules of alerts.yml loaded. A scenario gives every metric
data: labs posted as JSON (ANC 0.9: grade 3, a day-1 hold and its dose decisions; ANC 0.4: grade
4, a critical alert), an HL7 v2 ORU^R01, an invalid request (refused), a message that is not JSON
produced onto the clinical-events topic (dead-lettered), a serious adverse event whose site learned
of it 2 days ago (a critical alert past its 24-hour reporting deadline), acknowledgements through
the alerts API (time to acknowledge), and the demo cohort posted meanwhile. It runs twice, the
second time once Prometheus has scraped the series the first created: a labelled counter appears
with its first increment, which rate() cannot see.

Then every query of every dashboard panel, read from the JSON files with Grafana's built-in
variables replaced ($__rate_interval: 1m), must return at least one series, and at least one
finite value (a panel of gaps fails).

The alert rules are not queried with their thresholds removed: several match failures a healthy
run does not have (a broker refusing ingest, a service down, abandoned notifications), so their
left side would rightly be empty. Instead each rule must be loaded and evaluated by the server
without error; every metric it names must return series, carrying every label the rule matches
on or groups by (so the rule watches what the services really export); and the rules the scenario
provokes (dead letters, an overdue SAE, a critical alert unacknowledged) must be pending or firing,
while those of failures it does not have must not be. The rules' logic on synthetic series is
alerts.test.yml's part (tests/ops/test_promtool.py).

At the end both dashboards are drawn (deploy/grafana/render.py) into test-artifacts/ops/, or the
directory OPS_SCREENSHOT_DIR names; OPS_FEED_SECONDS (default 6) spreads the demo cohort over
more time, for the pictures in docs/operate (see docs/operate/README.md).
"""

import asyncio
import contextlib
import math
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from services.common.net import free_port
from services.demo.cohort import build_cohort
from services.ingest.interop.routes import HL7_MEDIA_TYPE
from shared.topics import CLINICAL_EVENTS
from tests.e2e.conftest import ARTIFACTS, Pipeline, live_pipeline
from tests.ops.support import (
    DASHBOARD_FILES,
    PROMETHEUS_DIR,
    alert_rules,
    dashboards,
    groupings,
    load_renderer,
    matchers,
    metric_names,
    tool,
)
from tests.support import INGEST_AUTH, PHYSICIAN, eventually, produce

pytestmark = pytest.mark.e2e
render = load_renderer()
SCREENSHOTS = Path(os.environ.get("OPS_SCREENSHOT_DIR") or ARTIFACTS / "ops")
FEED_SECONDS = float(os.environ.get("OPS_FEED_SECONDS", "6"))
SCRAPE_S = 1.0
HL7_PATIENTS = {"GZ01-504": "GZ9000504", "GZ01-514": "GZ9000514"}
# What the scenario provokes, and failures it does not have.
EXPECTED_ACTIVE = {
    "SafetymonDeadLetters",
    "SafetymonSAEReportOverdue",
    "SafetymonCriticalAlertUnacknowledged",
}
EXPECTED_QUIET = {
    "SafetymonServiceDown",
    "SafetymonIngestBrokerUnavailable",
    "SafetymonNotificationAbandoned",
}


@dataclass
class Live:
    pipeline: Pipeline
    prometheus: str  # base URL
    started: datetime


@pytest.fixture(scope="module")
async def live(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Live]:
    workdir = tmp_path_factory.mktemp("ops")
    enrolment_map = workdir / "enrolment.csv"
    enrolment_map.write_text(
        "subject_id,site_id,patient_id\n"
        + "".join(f"{s},GZ01,{p}\n" for s, p in HL7_PATIENTS.items())
    )
    async with live_pipeline(
        kafka_bootstrap,
        postgres_url,
        "ops",
        ENROLMENT_MAP_FILE=str(enrolment_map),
        ESCALATION_CHECK_S="1",  # the desk's gauges are refreshed by the escalation pass
        ESCALATION_RECIPIENTS="safety-lead@example.org",
    ) as pipeline:
        async with prometheus_server(pipeline, workdir) as url:
            started = datetime.now(UTC)
            await drive_scenario(pipeline, url)
            yield Live(pipeline, url, started)


# --- Prometheus -----------------------------------------------------------------------------
def scrape_config(urls: dict[str, str]) -> dict:
    """deploy/prometheus/prometheus.yml scraping the services where they run, every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(
        scrape_interval=f"{SCRAPE_S:.0f}s",
        scrape_timeout=f"{SCRAPE_S:.0f}s",  # may not exceed the interval
        evaluation_interval=f"{SCRAPE_S:.0f}s",
    )
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        port = urls[job["job_name"]].rsplit(":", 1)[1]
        (static,) = job["static_configs"]
        static["targets"] = [f"127.0.0.1:{port}"]
    return config


@asynccontextmanager
async def prometheus_server(pipeline: Pipeline, workdir: Path) -> AsyncIterator[str]:
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(pipeline.urls)))
    url = f"http://127.0.0.1:{free_port()}"
    log_path = pipeline.services.log_dir / "prometheus.log"
    process = start_prometheus(config, workdir / "data", url, log_path)
    try:
        if not await eventually(lambda: ready(url, process), 30):
            pytest.fail(f"Prometheus did not become ready: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        await asyncio.to_thread(stop, process)


def start_prometheus(config: Path, data: Path, url: str, log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address={url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def ready(url: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        return True  # exited: stop waiting, the request below fails
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(f"{url}/-/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def query(client: httpx.AsyncClient, url: str, expr: str) -> list[dict]:
    response = await client.get(f"{url}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


# --- the scenario ---------------------------------------------------------------------------
def anc_lab(subject: str, value: float) -> dict:
    return {
        "subject_id": subject,
        "site_id": "GZ01",
        "test": "ANC",
        "value": value,
        "unit": "10^9/L",
        "reference_low": 1.8,
        "reference_high": 6.3,
        "collected_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
        "visit": {"cycle": 2, "day": 1},
        "source_system": "lis-gz01",
        "source_message_id": f"{subject}-C2D1-ANC",
    }


def hl7_oru(patient_id: str, control_id: str) -> bytes:
    taken = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y%m%d%H%M+0000")
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|GZ01-LIS|SAFETYMON|NCT05173246|{taken}||ORU^R01|{control_id}"
            "|P|2.5.1|||||CHN|UNICODE UTF-8",
            f"PID|1||{patient_id}^^^GZH^MR||TEST^PATIENT||19600101|M",
            "PV1|1|O|ONC^^^GZ01||||||||||||||||C2D1",
            f"OBR|1|P-{control_id}|F-{control_id}|57021-8^CBC W Auto Differential panel^LN"
            f"|||{taken}",
            "OBX|1|NM|751-8^Neutrophils [#/volume] in Blood by Automated count^LN||1.2|10*9/L"
            f"|1.8-6.3|L|||F|||{taken}",
        ]
    ).encode()


def serious_ae(subject: str) -> dict:
    """Febrile neutropenia the site learned of 2 days ago: its reporting deadline has passed."""
    aware = datetime.now(UTC) - timedelta(days=2)
    return {
        "subject_id": subject,
        "site_id": "GZ01",
        "term": "Febrile neutropenia",
        "grade": 3,
        "serious": True,
        "onset_date": aware.date().isoformat(),
        "site_aware_at": aware.isoformat(),
        "source_system": "edc",
        "source_message_id": f"{subject}-sae-1",
    }


# Labelled series the first round creates (at 1: invisible to rate() until the second round).
FIRST_SEEN = (
    'safetymon_ingest_events_total{source="hl7v2"}',
    'safetymon_ingest_rejected_requests_total{reason="invalid"}',
    'safetymon_dead_letters_total{service="grader"}',
    'safetymon_alert_time_to_acknowledge_seconds_count{severity="critical"}',
)


async def drive_scenario(pipeline: Pipeline, prometheus: str) -> None:
    ingest = pipeline.urls["ingest"]
    async with httpx.AsyncClient(timeout=30) as client:
        feeding = asyncio.create_task(feed_cohort(client, ingest, FEED_SECONDS))
        acking = asyncio.create_task(acknowledge_high_alerts(client, pipeline.urls["alerts"]))
        try:
            await scenario_round(pipeline, client, 0)
            # The second round only once Prometheus has scraped what the first created (the
            # alert service observes an acknowledgement when it consumes it, after its backlog).
            for expr in FIRST_SEEN:
                if not await eventually(lambda e=expr: query(client, prometheus, e), 30):
                    pytest.fail(f"Prometheus has no {expr} after the first round")
            await scenario_round(pipeline, client, 1)
            await feeding
        finally:
            feeding.cancel()
            acking.cancel()
            # A failure of either task is raised here; their cancellation is not.
            for task in (feeding, acking):
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def scenario_round(pipeline: Pipeline, client: httpx.AsyncClient, round_: int) -> None:
    ingest, n = pipeline.urls["ingest"], round_ * 10
    grade3, grade4 = f"GZ01-{501 + n}", f"GZ01-{502 + n}"
    for subject, value in ((grade3, 0.9), (grade4, 0.4)):
        posted = await client.post(
            f"{ingest}/v1/labs", json=anc_lab(subject, value), headers=INGEST_AUTH
        )
        assert posted.status_code == 202, posted.text
    hl7_subject = f"GZ01-{504 + n}"
    message = hl7_oru(HL7_PATIENTS[hl7_subject], f"OPS{504 + n}")
    hl7 = await client.post(
        f"{ingest}/v1/hl7",
        content=message,
        headers=INGEST_AUTH | {"content-type": HL7_MEDIA_TYPE},
    )
    assert hl7.status_code == 200, hl7.text
    refused = await client.post(
        f"{ingest}/v1/labs",
        json=anc_lab(f"GZ01-{503 + n}", 0.9) | {"unit": "mg/dL"},
        headers=INGEST_AUTH,
    )
    assert refused.status_code == 422
    topic = pipeline.settings.topic(CLINICAL_EVENTS)
    await produce(pipeline.settings.kafka_bootstrap_servers, topic, [(b"poison", b"not json")])
    sae = await client.post(
        f"{ingest}/v1/adverse-events", json=serious_ae(f"GZ01-{505 + n}"), headers=INGEST_AUTH
    )
    assert sae.status_code == 202, sae.text
    await acknowledge(client, pipeline.urls["alerts"], grade4)


async def acknowledge(client: httpx.AsyncClient, alerts: str, subject: str) -> None:
    """Acknowledge the subject's critical alert once the alert service has stored it."""

    async def stored() -> list[dict]:
        params = {"subject_id": subject, "severity": "critical"}
        return (await client.get(f"{alerts}/v1/alerts", params=params, headers=PHYSICIAN)).json()

    alert, *_ = await eventually(stored, 15) or pytest.fail(f"no critical alert of {subject}")
    taken = await client.post(
        f"{alerts}/v1/alerts/{alert['alert_id']}/acknowledge",
        json={"comment": "Seen; chemotherapy held"},
        headers=PHYSICIAN,
    )
    assert taken.status_code == 200, taken.text


async def acknowledge_high_alerts(client: httpx.AsyncClient, alerts: str) -> None:
    """As a desk would: every 2 s, take the oldest waiting high alert (the SAEs' alerts are
    critical: they stay unacknowledged, and overdue)."""
    while True:
        await asyncio.sleep(2)
        waiting = (
            await client.get(
                f"{alerts}/v1/alerts", params={"severity": "high", "limit": 20}, headers=PHYSICIAN
            )
        ).json()
        for alert in waiting:
            if alert["status"] in ("raised", "notified"):
                url = f"{alerts}/v1/alerts/{alert['alert_id']}/acknowledge"
                await client.post(url, json={"comment": "Taken"}, headers=PHYSICIAN)
                break


async def feed_cohort(client: httpx.AsyncClient, ingest: str, seconds: float) -> None:
    """The demo's synthetic cohort, in batches of one endpoint, spread over `seconds`."""
    cohort = build_cohort()
    batches: list[list] = []
    for submission in cohort:
        if batches and batches[-1][0].endpoint == submission.endpoint and len(batches[-1]) < 50:
            batches[-1].append(submission)
        else:
            batches.append([submission])
    pause = seconds / len(batches)
    for batch in batches:
        response = await client.post(
            f"{ingest}{batch[0].endpoint}/batch", json=[s.body for s in batch], headers=INGEST_AUTH
        )
        assert response.status_code == 202, response.text
        await asyncio.sleep(pause)


# --- the queries ----------------------------------------------------------------------------
@dataclass
class Answer:
    where: str
    expr: str
    series: int
    finite: int


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel, PromQL) of every dashboard query, Grafana's variables as for a 1 s scrape."""
    return [
        (
            f"{name}: {q.panel} [{q.ref_id}]",
            render.expand(q.expr, rate_interval="1m", interval="1s", range_="5m"),
        )
        for name, dashboard in dashboards().items()
        for q in render.queries(dashboard)
    ]


async def answers(url: str) -> list[Answer]:
    found = []
    async with httpx.AsyncClient(timeout=10) as client:
        for where, expr in dashboard_queries():
            result = await query(client, url, expr)
            values = [float(r["value"][1]) for r in result]
            finite = sum(1 for v in values if math.isfinite(v))
            found.append(Answer(where, expr, len(result), finite))
    return found


def print_table(found: list[Answer]) -> None:
    print(f"\n{'series':>6} {'finite':>6}  panel / query")
    for a in found:
        print(f"{a.series:>6} {a.finite:>6}  {a.where}\n{'':15}{a.expr}")


async def test_every_dashboard_query_returns_data(live: Live) -> None:
    # Rates need a few samples after the scenario; the lag watcher a pass (every 15 s).
    found = await eventually(lambda: complete(live.prometheus), 45)
    found = found or await answers(live.prometheus)
    print_table(found)
    empty = [f"{a.where}: {a.expr}" for a in found if not a.finite]
    assert not empty, "queries without data:\n" + "\n".join(empty)


async def complete(url: str) -> list[Answer] | None:
    found = await answers(url)
    return found if all(a.finite for a in found) else None


# --- the rules ------------------------------------------------------------------------------
async def test_every_rule_is_evaluated_on_metrics_the_services_export(live: Live) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        groups = (await client.get(f"{live.prometheus}/api/v1/rules")).json()["data"]["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        print(f"\n{'series':>6}  rule: metric (labels it uses)")
        for rule in alert_rules():
            assert rule.alert in loaded, f"{rule.alert} not loaded"
            assert loaded[rule.alert]["health"] == "ok", loaded[rule.alert].get("lastError")
            for metric, labels in used_labels(rule.expr).items():
                result = await query(client, live.prometheus, metric)
                print(f"{len(result):>6}  {rule.alert}: {metric} ({', '.join(sorted(labels))})")
                assert result, f"{rule.alert}: no series of {metric}"
                present = set().union(*(r["metric"].keys() for r in result))
                assert labels <= present, f"{rule.alert}: {metric} lacks {labels - present}"


def used_labels(expr: str) -> dict[str, set[str]]:
    """Each metric of `expr`, with the labels the expression matches on or groups by."""
    used: dict[str, set[str]] = {name: set() for name in metric_names(expr)}
    for metric, label, _, _ in matchers(expr):
        used[metric].add(label)
    for _, labels, metrics in groupings(expr):
        for metric in metrics:
            used[metric] |= set(labels)
    return used


async def test_the_scenario_sets_off_its_alerts_and_no_others(live: Live) -> None:
    async def states() -> dict[str, set[str]]:
        async with httpx.AsyncClient(timeout=10) as client:
            alerts = (await client.get(f"{live.prometheus}/api/v1/alerts")).json()["data"]
        found: dict[str, set[str]] = {}
        for alert in alerts["alerts"]:
            found.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
        return found

    found = await eventually(lambda: _all_active(states), 30) or await states()
    print(f"\nalerts: {found}")
    for name in EXPECTED_ACTIVE:
        assert found.get(name, set()) & {"pending", "firing"}, f"{name} not active: {found}"
    assert not EXPECTED_QUIET & found.keys(), found
    assert "firing" in found["SafetymonDeadLetters"]  # `for` 0: at once


async def _all_active(states) -> dict[str, set[str]] | None:
    found = await states()
    return found if EXPECTED_ACTIVE <= found.keys() else None


# --- the pictures ---------------------------------------------------------------------------
async def test_the_dashboards_are_drawn(live: Live) -> None:
    end = datetime.now(UTC)
    for path in DASHBOARD_FILES:
        png = SCREENSHOTS / f"{path.stem}.png"
        out = await asyncio.to_thread(
            render.render, path, live.prometheus, live.started, end, png, SCRAPE_S
        )
        assert out.stat().st_size > 50_000, out
        print(f"\n{out}")
