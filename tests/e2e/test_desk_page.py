"""The safety desk page in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/e2e/browser/desk.mjs), against the alert service run as a process on the real Kafka broker
and PostgreSQL.

The page is opened signed out (a sign-in form, no alerts) and signed in through its form; then
alerts are published to the alerts topic, and they must appear without a reload, most severe first,
with the overdue reporting deadline in red and hostile markup in a title shown as text. A comment
typed into the page acknowledges one as the signed-in physician; it must move to "recently
acknowledged" and its history must show the acknowledgement. The screenshot is kept in
test-artifacts/desk/desk.png.
"""

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.common.net import free_port
from services.ctcae_grader.domain import assess
from services.demo.processes import Services
from services.demo.smtp_sink import SmtpSink
from shared.events import AlertRaised, utc_now
from shared.topics import ALERTS
from tests.support import USERS_FILE, produce_events
from tests.unit.factories import ae, lab

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "desk"
BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MARKUP = '<img src=x onerror="window.__xss=1"><b>'
# A published throwaway account of deploy/users.example.yaml (local use and tests only).
PHYSICIAN, PASSWORD = "safety-physician-01", "local-physician-pass"


@dataclass
class Desk:
    url: str
    bootstrap: str
    alerts_topic: str
    sink: SmtpSink


@pytest.fixture(scope="module")
async def desk_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A database of this module's own, dropped afterwards: the alerts published here are
    backdated and overdue, and any alert service sharing their database would escalate them
    (and email about them) during other tests."""
    name = f"safetymon_desk_{uuid.uuid4().hex[:12]}"
    admin_dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def desk(kafka_bootstrap: str, desk_database_url: str) -> AsyncIterator[Desk]:
    sink = SmtpSink()
    sink.start()
    ports = {name: free_port() for name in ("ingest", "grader", "alerts")}
    namespace = f"desk-{time.time_ns()}."
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": desk_database_url,
        "TOPIC_NAMESPACE": namespace,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(sink.port),
        "ALERT_EMAIL_RECIPIENTS": "safety-desk@example.org",
        "INGEST_PORT": str(ports["ingest"]),
        "GRADER_PORT": str(ports["grader"]),
        "ALERTS_PORT": str(ports["alerts"]),
        "USERS_FILE": USERS_FILE,
        "SESSION_SECRET": "desk-session-secret-" + uuid.uuid4().hex,
    }
    services = Services(env, ARTIFACTS)
    services.start()
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        await services.wait_healthy(urls)
        yield Desk(urls["alerts"], kafka_bootstrap, namespace + ALERTS, sink)
    finally:
        services.stop()
        sink.stop()


def browser_ready() -> None:
    """Fail (never skip) with what to do when the browser or its driver is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: scripts/test installs it "
            "(apt-get install -y chromium); set CHROMIUM to use another binary"
        )
    if shutil.which("node") is None:
        pytest.fail("node not found: the desk browser test runs tests/e2e/browser/desk.mjs")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(
            f"playwright-core not installed in {BROWSER_DIR}: scripts/test runs npm ci there"
        )


def alerts_to_publish() -> tuple[AlertRaised, AlertRaised, AlertRaised]:
    """Three alerts of two subjects: a day-1 ANC hold (high, raised 40 min ago); a serious
    febrile neutropenia whose 24-hour reporting deadline passed an hour ago (critical); and the
    dose reduction it implies (high, raised 3 h ago), whose title carries markup."""
    now = utc_now()
    (anc,) = assess(lab("ANC", 0.9, subject_id="GZ01-201")).alerts
    sae, reduction = assess(
        ae(
            subject_id="GZ01-202",
            onset_date=(now - timedelta(days=2)).date().isoformat(),
            site_aware_at=now - timedelta(hours=25),
        )
    ).alerts
    assert sae.payload.due_at is not None and reduction.payload.due_at is None
    anc = anc.model_copy(update={"recorded_at": now - timedelta(minutes=40)})
    sae = sae.model_copy(update={"recorded_at": now - timedelta(hours=24, minutes=50)})
    reduction = reduction.model_copy(
        update={
            "recorded_at": now - timedelta(hours=3),
            "payload": reduction.payload.model_copy(
                update={"title": MARKUP + reduction.payload.title}
            ),
        }
    )
    return anc, sae, reduction


async def test_the_desk_shows_new_alerts_live_and_acknowledges_one(desk: Desk) -> None:
    browser_ready()
    anc, sae, reduction = alerts_to_publish()
    comment = "Cycle 2 held; repeat ANC on day 8 <ok>"
    config = {
        "url": desk.url,
        "chromium": CHROMIUM,
        "timezone": "Asia/Shanghai",
        "expectOpen": [str(a.payload.alert_id) for a in (anc, sae, reduction)],
        "acknowledge": str(anc.payload.alert_id),
        "user": PHYSICIAN,
        "password": PASSWORD,
        "comment": comment,
        "screenshot": str(ARTIFACTS / "desk.png"),
        "timeoutMs": 15000,
    }
    started = time.monotonic()
    browser = await asyncio.create_subprocess_exec(
        "node",
        "desk.mjs",
        json.dumps(config),
        cwd=BROWSER_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await asyncio.wait_for(browser.stdout.readline(), 60)
        if json.loads(ready or b"null") != {"ready": True}:
            out, err = await asyncio.wait_for(browser.communicate(), 30)
            pytest.fail(f"the desk did not come up: {(ready + out).decode()} {err.decode()}")
        await produce_events(desk.bootstrap, desk.alerts_topic, [anc, sae, reduction])
        out, err = await asyncio.wait_for(browser.communicate(), 120)
    finally:
        if browser.returncode is None:
            browser.kill()
            await browser.wait()
    elapsed = time.monotonic() - started
    assert browser.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    (ARTIFACTS / "desk-result.json").write_text(json.dumps(result, indent=2))
    print(
        f"\ndesk: alerts shown {result.get('appearedAfterMs')} ms after publishing, acknowledged "
        f"alert moved {result.get('movedAfterMs')} ms after the click; browser run {elapsed:.1f} s"
    )
    assert "error" not in result, result["error"]

    assert result["status"] == 200
    assert result["signedOut"] == {
        "message": "Sign in to see the alerts.",
        "deskVisible": False,
        "alertCards": 0,
    }
    assert result["wrongPassword"] == "Not signed in: unknown user or wrong password"
    signed_in = " ".join(result["signedInAs"].split())
    assert signed_in == f"Signed in as {PHYSICIAN} (safety physician) Sign out"
    assert result["title"].endswith("Safety desk · safetymon")
    assert "script-src 'self'" in result["contentSecurityPolicy"]
    assert result["sameDocument"], "the page was reloaded"
    assert result["appearedAfterMs"] < 10000
    assert result["pageErrors"] == []
    refused = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    assert result["consoleErrors"] == [
        f"{refused} [/auth/me]",  # signed out at first
        f"{refused} [/auth/login]",  # the wrong password
    ]
    assert result["foreignRequests"] == [], "the page must load nothing from other hosts"

    ids = {"anc": str(anc.payload.alert_id), "sae": str(sae.payload.alert_id)}
    ids["reduction"] = str(reduction.payload.alert_id)
    order = [ids["sae"], ids["reduction"], ids["anc"]]
    assert result["openOrder"] == order, "most severe first, then oldest first"

    shown = result["open"]
    held = shown[ids["anc"]]
    assert (held["severity"], held["title"]) == ("HIGH", anc.payload.title)
    assert (held["subject"], held["site"]) == ("GZ01-201", "GZ01")
    assert held["status"] in ("raised · email pending", "notified by email")
    assert held["age"] == "Raised 40 min ago"
    assert held["raisedTooltip"].endswith("UTC+08:00")  # local time, with its offset
    assert (held["deadline"], held["deadlineState"]) == ("No reporting deadline", "none")
    assert held["acked"] is None
    assert shown[ids["reduction"]]["age"] == "Raised 3 h 0 min ago"

    overdue = shown[ids["sae"]]
    assert (overdue["severity"], overdue["deadlineState"]) == ("CRITICAL", "overdue")
    assert overdue["deadline"].startswith("OVERDUE by 1 h ")
    assert overdue["deadline"].endswith("UTC+08:00)")
    assert overdue["deadlineColour"] == "rgb(185, 28, 28)"  # red
    assert overdue["severityColour"] != held["severityColour"]

    hostile = shown[ids["reduction"]]
    assert hostile["title"] == reduction.payload.title  # markup and all, shown as text
    assert hostile["title"].startswith(MARKUP)
    assert hostile["imgElements"] == 0 and result["injected"] is None

    assert result["openAfter"] == [ids["sae"], ids["reduction"]]
    assert result["openCountText"] == "2"
    recent = result["recent"]
    assert recent["status"] == "acknowledged"
    assert recent["acked"].startswith(f"Acknowledged by {PHYSICIAN} at ")
    assert recent["acked"].endswith(f"UTC+08:00 — “{comment}”")

    detail = result["detail"]
    assert detail["title"] == anc.payload.title
    assert detail["fields"]["Acknowledged by"] == PHYSICIAN
    assert detail["fields"]["Comment"] == comment
    assert [h.split(" · ", 1)[1] for h in detail["history"]] == [
        "AlertRaised",
        f"AlertAcknowledged by {PHYSICIAN}",
    ]
    assert any("safety-desk@example.org" in n for n in detail["notifications"])
    assert (ARTIFACTS / "desk.png").stat().st_size > 10000
    assert result["afterSignOut"] == {
        "deskVisible": False,
        "alertCards": 0,
        "stillSignedIn": False,
    }


async def test_the_desk_serves_only_its_own_files(desk: Desk) -> None:
    async with httpx.AsyncClient(base_url=desk.url) as client:
        page = await client.get("/desk")
        script = await client.get("/desk/static/desk.js")
        others = [
            await client.get(path)
            for path in (
                "/desk/static/desk.html",
                "/desk/static/..%2Fweb.py",
                "/desk/static/%2E%2E/web.py",
                "/desk/static/../web.py",
            )
        ]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text
    assert [response.status_code for response in others] == [404] * len(others)
