"""The alert service on PostgreSQL and the real broker: stored once, emailed once, acknowledged."""

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from services.alerts.app import create_app
from services.alerts.db import alerts, create_engine, notifications, upgrade_schema
from services.alerts.domain import TransitionError
from services.alerts.routing import Recipient
from services.alerts.store import AlertStore
from services.common.net import free_port
from services.ctcae_grader.domain import assess
from services.demo.smtp_sink import SmtpSink
from shared.events import AlertAcknowledged, AlertAcknowledgedPayload, AlertRaised, Source
from shared.settings import Settings
from shared.topics import ALERTS
from tests.support import (
    PHYSICIAN,
    PHYSICIAN_2,
    SITE_GZ01,
    VIEWER,
    events_of,
    eventually,
    produce_events,
    read_topic,
    running,
)
from tests.unit.factories import ae, lab

pytestmark = pytest.mark.integration
RECIPIENTS = [
    Recipient(channel="email", to="desk@example.org"),
    Recipient(channel="email", to="physician@example.org"),
]


def raised(event=None) -> AlertRaised:
    """The first alert the event raises (for an SAE: the reporting alert)."""
    return assess(event or lab("ANC", 0.9)).alerts[0]


def acknowledgement(alert: AlertRaised, by: str) -> AlertAcknowledged:
    return AlertAcknowledged(
        event_id=uuid.uuid4(),
        study_id=alert.study_id,
        site_id=alert.site_id,
        subject_id=alert.subject_id,
        occurred_at=alert.recorded_at,
        recorded_at=alert.recorded_at,
        source=Source(system="test", message_id=f"ack-by-{by}"),
        payload=AlertAcknowledgedPayload(alert_id=alert.payload.alert_id, acknowledged_by=by),
    )


@pytest.fixture(scope="module")
async def store(database_url: str) -> AsyncIterator[AlertStore]:
    await asyncio.to_thread(upgrade_schema, database_url)
    engine = create_engine(database_url)
    yield AlertStore(engine)
    await engine.dispose()


async def count(store: AlertStore, table, **where) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with store.engine.connect() as conn:
        return (await conn.execute(query)).scalar_one()


async def test_a_raised_alert_is_stored_once_with_one_email_per_recipient(
    store: AlertStore,
) -> None:
    alert = raised(lab("ANC", 0.8, source_message_id="store-1"))
    assert await store.record_raised(alert, RECIPIENTS) is True
    assert await store.record_raised(alert, RECIPIENTS) is False
    assert await count(store, alerts, alert_id=alert.payload.alert_id) == 1
    assert await count(store, notifications, alert_id=alert.payload.alert_id) == 2


async def test_acknowledging_records_who_and_keeps_the_history(store: AlertStore) -> None:
    alert = raised(lab("ANC", 0.7, source_message_id="store-2"))
    await store.record_raised(alert, RECIPIENTS)
    ack = acknowledgement(alert, "physician-7")
    row = await store.acknowledge(ack)
    assert (row["status"], row["acknowledged_by"]) == ("acknowledged", "physician-7")
    assert (await store.acknowledge(ack))["acknowledged_by"] == "physician-7"  # replay: no-op
    with pytest.raises(TransitionError):
        await store.acknowledge(acknowledgement(alert, "someone-else"))
    detail = await store.get(alert.payload.alert_id)
    assert [h["event_type"] for h in detail["history"]] == ["AlertRaised", "AlertAcknowledged"]


async def test_open_alerts_come_most_severe_first(store: AlertStore) -> None:
    high = raised(lab("ANC", 1.2, source_message_id="store-3"))
    critical = raised(ae(source_message_id="store-4"))
    await store.record_raised(high, RECIPIENTS)
    await store.record_raised(critical, RECIPIENTS)
    severities = [row["severity"] for row in await store.list_alerts()]
    assert severities == sorted(severities, key=["critical", "high", "medium", "low"].index)
    assert severities[0] == "critical"


async def test_the_service_stores_emails_and_acknowledges_once(settings: Settings) -> None:
    sink = SmtpSink()
    sink.start()
    settings = settings.model_copy(
        update={"smtp_port": sink.port, "alert_email_recipients": ["desk@example.org"]}
    )
    alert = raised(lab("ANC", 0.6, source_message_id="svc-1"))
    boot = settings.kafka_bootstrap_servers
    try:
        async with running(create_app(settings), PHYSICIAN) as client:
            await produce_events(boot, settings.topic(ALERTS), [alert, alert])  # redelivered
            assert await eventually(
                lambda: any(
                    m["X-Safetymon-Alert-Id"] == str(alert.payload.alert_id) for m in sink.messages
                )
            )
            listed = (await client.get("/v1/alerts")).json()
            path = f"/v1/alerts/{alert.payload.alert_id}/acknowledge"
            taken = await client.post(path, json={"comment": "on it"})
            again = await client.post(path, json={}, headers=PHYSICIAN_2)
            missing = await client.post(f"/v1/alerts/{'0' * 32}/acknowledge", json={})
            detail = (await client.get(f"/v1/alerts/{alert.payload.alert_id}")).json()
            await asyncio.sleep(1.0)  # time for a duplicate email to arrive, if one were sent
    finally:
        sink.stop()

    # (other alerts in this session's database may be escalated meanwhile: count this one's)
    # One email per state change: raised (sent twice in the log: one email), then acknowledged.
    mine = [m for m in sink.messages if m["X-Safetymon-Alert-Id"] == str(alert.payload.alert_id)]
    assert len(mine) == 2
    email, taken_email = mine
    assert email["To"] == "desk@example.org"
    assert "GZ01-005" in email["Subject"] and "hold" in email["Subject"]
    assert "ACKNOWLEDGED by safety-physician-01" in taken_email["Subject"]
    assert str(alert.payload.alert_id) in [a["alert_id"] for a in listed]
    assert taken.status_code == 200 and taken.json()["status"] == "acknowledged"
    assert again.status_code == 409 and "safety-physician-01" in again.json()["detail"]
    assert missing.status_code == 404
    assert detail["notifications"][0]["status"] == "sent"
    logged = await read_topic(boot, settings.topic(ALERTS), lambda r: len(r) >= 3)
    assert [e.event_type for e in events_of(logged)].count("AlertAcknowledged") == 1


async def test_an_email_that_failed_is_recorded_and_sent_when_the_server_is_back(
    settings: Settings,
) -> None:
    port = free_port()  # nothing listens here yet: the first delivery fails
    settings = settings.model_copy(
        update={
            "smtp_port": port,
            "alert_email_recipients": ["desk@example.org"],
            "notification_retry_s": 0.5,
            "smtp_timeout_s": 2.0,
        }
    )
    alert = raised(lab("ANC", 0.5, source_message_id="svc-retry"))
    path = f"/v1/alerts/{alert.payload.alert_id}"
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), [alert])

        async def delivery() -> dict | None:
            response = await client.get(path)
            return response.json()["notifications"][0] if response.status_code == 200 else None

        failed = await eventually(lambda: _with_status(delivery(), "failed"), timeout_s=10.0)
        sink = SmtpSink(port)
        sink.start()
        try:
            sent = await eventually(lambda: _with_status(delivery(), "sent"), timeout_s=10.0)
        finally:
            sink.stop()
    assert failed and "Connect" in failed["last_error"]
    assert sent and sent["attempts"] > failed["attempts"]  # retried until the server was back
    mine = [m for m in sink.messages if m["X-Safetymon-Alert-Id"] == str(alert.payload.alert_id)]
    assert len(mine) == 1


async def _with_status(delivery, status: str) -> dict | None:
    found = await delivery
    return found if found and found["status"] == status else None


def messages_about(sink: SmtpSink, alert: AlertRaised, to: str) -> list:
    return [
        m
        for m in sink.messages
        if m["X-Safetymon-Alert-Id"] == str(alert.payload.alert_id) and m["To"] == to
    ]


@pytest.fixture
def escalating(settings: Settings) -> tuple[Settings, SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield (
        settings.model_copy(
            update={
                "smtp_port": sink.port,
                "alert_email_recipients": ["desk@example.org"],
                "escalation_recipients": ["monitor@example.org"],
                "escalation_minutes": {"critical": 0.02},
                "escalation_check_s": 0.2,
            }
        ),
        sink,
    )
    sink.stop()


async def test_an_unacknowledged_critical_alert_escalates_once_at_its_limit(
    escalating: tuple[Settings, SmtpSink],
) -> None:
    settings, sink = escalating
    alert = raised(lab("ANC", 0.4, source_message_id="esc-1"))  # grade 4 on day 1: critical
    assert alert.payload.severity.value == "critical"
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), [alert])
        assert await eventually(lambda: messages_about(sink, alert, "monitor@example.org"), 10)
        await asyncio.sleep(2.0)  # more than another limit: it must not escalate again
        detail = (await client.get(f"/v1/alerts/{alert.payload.alert_id}")).json()
    assert len(messages_about(sink, alert, "desk@example.org")) == 1
    (escalation_email,) = messages_about(sink, alert, "monitor@example.org")
    assert "ESCALATED, NOT ACKNOWLEDGED" in escalation_email["Subject"]
    assert detail["escalation_tier"] == 1
    assert [h["event_type"] for h in detail["history"]].count("AlertEscalated") == 1


async def test_an_acknowledged_alert_does_not_escalate(
    escalating: tuple[Settings, SmtpSink],
) -> None:
    settings, sink = escalating
    alert = raised(lab("ANC", 0.3, source_message_id="esc-2"))
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), [alert])
        assert await eventually(lambda: messages_about(sink, alert, "desk@example.org"), 10)
        taken = await client.post(f"/v1/alerts/{alert.payload.alert_id}/acknowledge", json={})
        await asyncio.sleep(2.5)
    assert taken.status_code == 200
    assert messages_about(sink, alert, "monitor@example.org") == []


async def test_resolving_closes_the_alert_once_and_is_logged(
    escalating: tuple[Settings, SmtpSink],
) -> None:
    settings, _ = escalating
    alert = raised(lab("ANC", 1.2, source_message_id="resolve-1"))
    boot = settings.kafka_bootstrap_servers
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(boot, settings.topic(ALERTS), [alert])
        path = f"/v1/alerts/{alert.payload.alert_id}"
        assert await eventually(lambda: _status(client, path), 10)
        closed = await client.post(f"{path}/resolve", json={"comment": "counts recovered"})
        again = await client.post(f"{path}/resolve", json={}, headers=PHYSICIAN_2)
    assert closed.status_code == 200 and closed.json()["status"] == "resolved"
    assert closed.json()["resolution_comment"] == "counts recovered"
    assert again.status_code == 409
    logged = await read_topic(boot, settings.topic(ALERTS), lambda r: len(r) >= 2)
    assert "AlertResolved" in [e.event_type for e in events_of(logged)]


async def _status(client: httpx.AsyncClient, path: str, headers: dict | None = None) -> str | None:
    response = await client.get(path, headers=headers)
    return response.json()["status"] if response.status_code == 200 else None


class FlakyWebhook:
    """A webhook endpoint on 127.0.0.1 that answers 500 to its first `failures` posts."""

    def __init__(self, failures: int) -> None:
        self.failures, self.posts, self.accepted = failures, 0, []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.posts += 1
                ok = hook.posts > hook.failures
                if ok:
                    hook.accepted.append((self.headers["Idempotency-Key"], body))
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


async def test_a_webhook_failing_twice_gets_exactly_one_delivery_and_email_is_not_held_up(
    escalating: tuple[Settings, SmtpSink], tmp_path: Path
) -> None:
    settings, sink = escalating
    hook = FlakyWebhook(failures=2)
    routes = tmp_path / "routing.yaml"
    routes.write_text(
        "routes:\n  - recipients:\n"
        "      - {channel: email, to: desk@example.org}\n"
        f"      - {{channel: webhook, to: '{hook.url}'}}\n"
    )
    settings = settings.model_copy(
        update={
            "routing_file": str(routes),
            "notification_retry_s": 0.2,
            "escalation_minutes": {},
        }
    )
    alert = raised(lab("ANC", 0.8, source_message_id="hook-1"))
    try:
        async with running(create_app(settings), PHYSICIAN) as client:
            await produce_events(
                settings.kafka_bootstrap_servers, settings.topic(ALERTS), [alert, alert]
            )  # and a redelivery
            assert await eventually(lambda: messages_about(sink, alert, "desk@example.org"), 5)
            assert await eventually(lambda: hook.accepted, 15)
            await asyncio.sleep(1.5)  # time for a duplicate, if one were sent
            detail = (await client.get(f"/v1/alerts/{alert.payload.alert_id}")).json()
    finally:
        hook.stop()
    assert hook.posts == 3 and len(hook.accepted) == 1
    ((key, body),) = hook.accepted
    assert key  # an Idempotency-Key lets the receiver drop a resend
    assert body["alert_id"] == str(alert.payload.alert_id) and body["event"] == "raised"
    webhook = next(n for n in detail["notifications"] if n["channel"] == "webhook")
    assert (webhook["status"], webhook["attempts"]) == ("sent", 3)
    assert [a["outcome"] for a in webhook["attempt_log"]] == ["failed", "failed", "sent"]
    assert "500" in webhook["attempt_log"][0]["error"]
    assert len(messages_about(sink, alert, "desk@example.org")) == 1


async def test_a_restart_midway_sends_nothing_twice(
    escalating: tuple[Settings, SmtpSink],
) -> None:
    settings, sink = escalating
    first, second = (raised(lab("ANC", v, source_message_id=f"restart-{v}")) for v in (0.45, 0.35))
    boot = settings.kafka_bootstrap_servers
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(boot, settings.topic(ALERTS), [first])
        assert await eventually(lambda: messages_about(sink, first, "monitor@example.org"), 10)

        async def all_recorded_sent() -> bool:
            response = await client.get(f"/v1/alerts/{first.payload.alert_id}")
            notes = response.json()["notifications"] if response.status_code == 200 else []
            return len(notes) >= 2 and all(n["status"] == "sent" for n in notes)

        # Stopped once the sends are recorded: a stop between the SMTP server's acceptance and
        # the record is the one window where a resend is unavoidable (tests/faults counts it).
        assert await eventually(all_recorded_sent, 10)
    # A new process: the same log, the same database; the first alert was emailed and escalated.
    async with running(create_app(settings)):
        await produce_events(boot, settings.topic(ALERTS), [second, first])  # first redelivered
        assert await eventually(lambda: messages_about(sink, second, "monitor@example.org"), 10)
        await asyncio.sleep(1.5)
    for alert in (first, second):
        assert len(messages_about(sink, alert, "desk@example.org")) == 1
        assert len(messages_about(sink, alert, "monitor@example.org")) == 1


async def test_access_is_by_role_and_site_and_every_view_and_action_is_audited(
    settings: Settings,
) -> None:
    gz01 = raised(lab("ANC", 0.6, source_message_id="access-gz01"))
    sh02 = raised(
        lab("ANC", 0.6, subject_id="SH02-002", site_id="SH02", source_message_id="access-sh02")
    )
    async with running(create_app(settings)) as client:
        await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), [gz01, sh02])
        assert await eventually(
            lambda: _status(client, f"/v1/alerts/{sh02.payload.alert_id}", PHYSICIAN), 10
        )
        anonymous = await client.get("/v1/alerts")
        viewer_ack = await client.post(
            f"/v1/alerts/{gz01.payload.alert_id}/acknowledge", json={}, headers=VIEWER
        )
        site_list = await client.get("/v1/alerts?status=all", headers=SITE_GZ01)
        site_other = await client.get(f"/v1/alerts/{sh02.payload.alert_id}", headers=SITE_GZ01)
        site_own = await client.get(f"/v1/alerts/{gz01.payload.alert_id}", headers=SITE_GZ01)
        other_subject = await client.get("/v1/subjects/SH02-002/timeline", headers=SITE_GZ01)
        other_subject_physician = await client.get(
            "/v1/subjects/SH02-002/timeline", headers=PHYSICIAN
        )
        site_ack = await client.post(
            f"/v1/alerts/{gz01.payload.alert_id}/acknowledge", json={}, headers=SITE_GZ01
        )
        signed_in = await client.post(
            "/auth/login", json={"user_id": "viewer-01", "password": "local-viewer-pass"}
        )
        me = await client.get("/auth/me")  # with the session cookie just set
        wrong = await client.post("/auth/login", json={"user_id": "viewer-01", "password": "x"})
        client.cookies.clear()
        audit = await client.get("/v1/audit", headers=PHYSICIAN)
        viewer_audit = await client.get("/v1/audit", headers=VIEWER)

    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    assert viewer_ack.status_code == 403
    assert "role viewer may not acknowledge" in viewer_ack.json()["detail"]
    assert {a["site_id"] for a in site_list.json()} == {"GZ01"}
    assert site_other.status_code == 404 and site_own.status_code == 200
    assert other_subject.status_code == 404  # another site's subject: not even that it exists
    assert other_subject_physician.status_code == 200
    assert site_ack.status_code == 403
    assert signed_in.status_code == 200 and me.json()["user_id"] == "viewer-01"
    assert wrong.status_code == 401
    assert viewer_audit.status_code == 403
    actions = {(row["user_id"], row["action"]) for row in audit.json()}
    assert ("site-user-gz01", "alert.view") in actions
    assert ("viewer-01", "sign-in") in actions
    assert any(row["client_ip"] for row in audit.json())


async def test_alerts_are_paged_and_filtered_with_the_total_in_a_header(settings: Settings) -> None:
    subject = "GZ01-077"
    made = [
        raised(lab("ANC", value, subject_id=subject, source_message_id=f"page-{value}"))
        for value in (0.3, 0.7, 1.2)  # critical (grade 4), high, high
    ]
    async with running(create_app(settings), PHYSICIAN) as client:
        await produce_events(settings.kafka_bootstrap_servers, settings.topic(ALERTS), made)

        async def all_three() -> bool:
            listed = await client.get("/v1/alerts", params={"subject_id": subject})
            return listed.headers.get("X-Total-Count") == "3"

        assert await eventually(all_three, 10)
        first = await client.get("/v1/alerts", params={"subject_id": subject, "limit": 2})
        rest = await client.get(
            "/v1/alerts", params={"subject_id": subject, "limit": 2, "offset": 2}
        )
        critical = await client.get(
            "/v1/alerts", params={"subject_id": subject, "severity": "critical"}
        )
        bad = await client.get("/v1/alerts", params={"severity": "urgent"})
    assert first.headers["X-Total-Count"] == "3" and len(first.json()) == 2
    assert first.json()[0]["severity"] == "critical"  # most severe first
    assert len(rest.json()) == 1
    ids = {a["alert_id"] for a in [*first.json(), *rest.json()]}
    assert ids == {str(a.payload.alert_id) for a in made}
    assert [a["severity"] for a in critical.json()] == ["critical"]
    assert bad.status_code == 422
