"""The safety desk page in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/e2e/browser/desk.mjs), against the alert service run as a process on the real Kafka broker
and PostgreSQL.

The page is opened signed out (a sign-in form, no alerts) and signed in through its form; then
alerts are published to the alerts topic, and they must appear without a reload, most severe first,
with the overdue reporting deadline in red and hostile markup in a title shown as text. A comment
typed into the page acknowledges one as the signed-in physician; it must move to "acknowledged and
recently resolved" and its history must show the acknowledgement. It is then resolved with a
comment (not without one) and shown as resolved, its history gaining AlertResolved; an alert
another physician resolved meanwhile is refused (409) naming who. The alert's subject has two labs
in the event log (one retracted) and their grades: its timeline must show them, oldest first, the
grade next to its lab, the retracted one struck through. The screenshots are kept in
test-artifacts/desk/: desk.png (resolved, with its detail), desk-resolve.png (an acknowledged
alert's Resolve refused without a comment), desk-conflict.png (the 409), desk-timeline.png.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.ctcae_grader.domain import assess
from services.demo.smtp_sink import SmtpSink
from services.ingest.domain import RetractionIn, retraction_event
from shared.events import AlertRaised, Envelope, LabResultReported, utc_now
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS
from tests.e2e.conftest import live_pipeline
from tests.support import (
    BROWSER_DIR,
    CHROMIUM,
    PHYSICIAN_2,
    browser_ready,
    produce_events,
)
from tests.unit.factories import STUDY, ae, lab

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "desk"
MARKUP = '<img src=x onerror="window.__xss=1"><b>'
# A published throwaway account of deploy/users.example.yaml (local use and tests only).
PHYSICIAN, PASSWORD = "safety-physician-01", "local-physician-pass"
OTHER_PHYSICIAN = "safety-physician-02"


@dataclass
class Desk:
    url: str
    bootstrap: str
    namespace: str
    sink: SmtpSink

    def topic(self, name: str) -> str:
        """A topic as the services name it (shared.settings: TOPIC_NAMESPACE + name)."""
        return self.namespace + name


@pytest.fixture(scope="module")
async def desk(kafka_bootstrap: str, postgres_url: str) -> AsyncIterator[Desk]:
    # A database of its own (as every live pipeline has): the alerts published here are
    # backdated and overdue, and an alert service sharing it would escalate them elsewhere.
    async with live_pipeline(kafka_bootstrap, postgres_url, "desk") as pipeline:
        namespace = pipeline.settings.topic_namespace
        yield Desk(pipeline.urls["alerts"], kafka_bootstrap, namespace, pipeline.sink)


def subject_labs() -> tuple[LabResultReported, LabResultReported, Envelope]:
    """Subject GZ01-201's labs: platelets on C1D15 (grade 2), withdrawn since (the sample had
    clotted), and the C2D1 ANC of 0.9 (grade 3) behind the day-1 hold alert."""
    plt = lab(
        "PLT",
        60,
        subject_id="GZ01-201",
        site_id="GZ01",
        source_message_id="desk-plt-c1d15",
        cycle=1,
        day=15,
        collected_at=datetime(2025, 3, 31, 1, 15, tzinfo=UTC),
    )
    anc = lab("ANC", 0.9, subject_id="GZ01-201", site_id="GZ01", source_message_id="desk-anc-c2d1")
    retraction = retraction_event(
        RetractionIn(
            subject_id="GZ01-201",
            site_id="GZ01",
            retracted_event_id=plt.event_id,
            reason="Sample clotted",
            source_message_id="desk-plt-c1d15-retraction",
        ),
        STUDY,
    )
    return plt, anc, retraction


def alerts_to_publish(
    anc_lab: LabResultReported,
) -> tuple[AlertRaised, AlertRaised, AlertRaised]:
    """Three alerts of two subjects: a day-1 ANC hold (high, raised 40 min ago); a serious
    febrile neutropenia whose 24-hour reporting deadline passed an hour ago (critical); and the
    dose reduction it implies (high, raised 3 h ago), whose title carries markup."""
    now = utc_now()
    (anc,) = assess(anc_lab).alerts
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


async def test_the_desk_shows_new_alerts_live_and_acknowledges_and_resolves_one(
    desk: Desk,
) -> None:
    browser_ready()
    plt_lab, anc_lab, retraction = subject_labs()
    anc, sae, reduction = alerts_to_publish(anc_lab)
    comment = "Cycle 2 held; repeat ANC on day 8 <ok>"
    resolve_comment = "ANC 1.6 on day 8; cycle 2 given at full dose"
    other_comment = "Dose reduced per protocol <b>"
    conflict_comment = "Reduced to dose level -1"
    config = {
        "url": desk.url,
        "chromium": CHROMIUM,
        "timezone": "Asia/Shanghai",
        "expectOpen": [str(a.payload.alert_id) for a in (anc, sae, reduction)],
        "acknowledge": str(anc.payload.alert_id),
        "user": PHYSICIAN,
        "password": PASSWORD,
        "comment": comment,
        "resolveComment": resolve_comment,
        "conflict": str(reduction.payload.alert_id),
        "otherToken": PHYSICIAN_2["Authorization"].removeprefix("Bearer "),
        "otherComment": other_comment,
        "conflictComment": conflict_comment,
        "missingSubject": sae.subject_id,
        "missingAlert": str(sae.payload.alert_id),
        "screenshot": str(ARTIFACTS / "desk.png"),
        "timeoutMs": 15000,
    }
    started = time.monotonic()
    browser = await asyncio.create_subprocess_exec(
        "node",
        "desk.mjs",
        json.dumps(config),
        cwd=BROWSER_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await asyncio.wait_for(browser.stdout.readline(), 60)
        if json.loads(ready or b"null") != {"ready": True}:
            out, err = await asyncio.wait_for(browser.communicate(), 30)
            pytest.fail(f"the desk did not come up: {(ready + out).decode()} {err.decode()}")
        await produce_events(desk.bootstrap, desk.topic(ALERTS), [anc, sae, reduction])
        # The timeline's subject in the log: its labs and the retraction on the clinical-events
        # topic, their grades (and the dose decision) on the assessments topic, as the grader
        # derives them. The grader running here derives them too, with the same event ids; the
        # page shows an item read twice once. (The ANC lab makes the grader raise the day-1 hold
        # alert again, also with the same id, after ours: the alert service keeps the first.)
        await produce_events(
            desk.bootstrap, desk.topic(CLINICAL_EVENTS), [plt_lab, anc_lab, retraction]
        )
        graded = assess(plt_lab).assessments + assess(anc_lab).assessments
        await produce_events(desk.bootstrap, desk.topic(ASSESSMENTS), graded)
        browser.stdin.write(b'{"produced": true}\n')
        await browser.stdin.drain()
        browser.stdin.close()
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
    failed = "Failed to load resource: the server responded with a status of"
    assert result["consoleErrors"] == [
        f"{failed} 401 (Unauthorized) [/auth/me]",  # signed out at first
        f"{failed} 401 (Unauthorized) [/auth/login]",  # the wrong password
        f"{failed} 409 (Conflict) [/v1/alerts/{reduction.payload.alert_id}/resolve]",
        f"{failed} 404 (Not Found) [/v1/subjects/{sae.subject_id}/timeline]",
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
    assert recent["subject"] == "GZ01-201"
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

    # Resolved from the acknowledged list: a comment is required; then shown as resolved, with
    # no form left, and its history gains the resolution.
    refusal = "Write why it can be closed: resolving needs a comment."
    assert result["resolveWithoutComment"] == refusal
    assert result["acknowledgeButtonOnAcknowledged"] is False
    resolved = result["resolved"]
    assert (resolved["status"], resolved["forms"]) == ("resolved", 0)
    assert resolved["acked"].startswith(f"Acknowledged by {PHYSICIAN} at ")  # who took it
    assert resolved["resolved"].startswith(f"Resolved by {PHYSICIAN} at ")
    assert resolved["resolved"].endswith(f"UTC+08:00 — “{resolve_comment}”")
    fields = result["detailResolved"]["fields"]
    assert (fields["Status"], fields["Resolved by"]) == ("resolved", PHYSICIAN)
    assert fields["Resolution"] == resolve_comment
    assert [h.split(" · ", 1)[1] for h in result["detailResolved"]["history"]] == [
        "AlertRaised",
        f"AlertAcknowledged by {PHYSICIAN}",
        f"AlertResolved by {PHYSICIAN}",
    ]
    assert (ARTIFACTS / "desk.png").stat().st_size > 10000

    # Resolved by another physician while this page still offered it: refused, naming who, and
    # the comment that was not saved is repeated; the alert then shows as resolved by them.
    conflict = result["conflict"]
    assert result["otherResolveStatus"] == 200
    assert conflict["card"].startswith(
        f"Not resolved: alert is already resolved by {OTHER_PHYSICIAN} at "
    )
    assert conflict["card"].endswith(f"UTC+08:00 (“{other_comment}”)")
    assert conflict["banner"] == (
        f"{reduction.payload.title}: {conflict['card']}. "
        f"Your comment was not saved: “{conflict_comment}”"
    )
    assert conflict["closed"].startswith(f"Resolved by {OTHER_PHYSICIAN} at ")
    assert (conflict["stillOpen"], conflict["dismissed"]) == (0, True)
    assert result["injectedAtEnd"] is None

    # The subject's timeline: oldest first; in one instant the lab, then what it caused; the
    # grade with its lab; the retracted lab struck through; local times with their offset.
    timeline = result["timeline"]
    assert timeline["visible"] and timeline["detailStillOpen"]
    assert timeline["title"] == "Subject GZ01-201"
    assert timeline["message"] is None
    assert timeline["legend"] == ["Lab 2", "Dose decision 1", "Alert 1"]
    items = timeline["items"]
    assert [(i["kind"], i["when"]) for i in items] == [
        ("lab", "2025-03-31 09:15 UTC+08:00"),
        ("lab", "2025-04-14 15:30 UTC+08:00"),
        ("dose-decision", "2025-04-14 15:30 UTC+08:00"),
        ("alert", "2025-04-14 15:30 UTC+08:00"),
    ]
    platelets, neutrophils, decision, alert = items
    assert (platelets["label"], platelets["text"], platelets["visit"]) == (
        "Lab",
        "PLT 60 x10^9/L",
        "C1D15",
    )
    assert platelets["grades"] == ["Platelet count decreased grade 2"]
    assert platelets["retracted"] and platelets["struckThrough"]
    assert (neutrophils["text"], neutrophils["visit"]) == ("ANC 0.9 x10^9/L", "C2D1")
    assert neutrophils["grades"] == ["Neutrophil count decreased grade 3"]  # once, read twice
    assert not neutrophils["retracted"] and not neutrophils["struckThrough"]
    assert decision["label"] == "Dose decision"
    assert decision["text"].startswith("Day-1 ANC below 1.5")
    assert (alert["text"], alert["severity"], alert["status"]) == (
        anc.payload.title,
        "HIGH",
        "resolved",
    )
    assert (ARTIFACTS / "desk-timeline.png").stat().st_size > 10000

    missing = result["timelineMissing"]
    assert missing == {
        "title": f"Subject {sae.subject_id}",
        "message": f"No events recorded for subject {sae.subject_id} that you can see.",
        "items": 0,
        "closedByEscape": True,
    }

    assert result["afterSignOut"] == {
        "deskVisible": False,
        "timelineVisible": False,
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
