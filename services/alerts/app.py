"""Alert service: stores raised alerts, emails the safety desk, lists and acknowledges alerts."""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlalchemy import text

from services.alerts.audit import AuditLog
from services.alerts.auth import (
    SESSION_COOKIE,
    Role,
    Sessions,
    User,
    UserDirectory,
    can_see,
    require_role,
    user_dependency,
)
from services.alerts.db import create_engine, upgrade_schema
from services.alerts.domain import (
    OPEN_STATUSES,
    AlertStatus,
    TransitionError,
    acknowledgement_id,
    escalation_due,
    escalation_id,
    resolution_id,
)
from services.alerts.faults import fault_point
from services.alerts.notify import SmtpSender, compose_email, send_webhook, webhook_payload
from services.alerts.routing import Recipient, load_routing
from services.alerts.store import (
    EMAIL,
    MAX_ATTEMPTS,
    AlertNotFound,
    AlertStore,
    PendingNotification,
)
from services.alerts.timeline import timeline
from services.alerts.web import desk_router
from services.common.consumer import RejectedEvent, subscribe, unreachable
from services.common.heap import settle_heap
from services.common.http import add_operational_routes
from services.common.logs import configure_logging
from shared.events import (
    AlertAcknowledged,
    AlertAcknowledgedPayload,
    AlertEscalated,
    AlertEscalatedPayload,
    AlertRaised,
    AlertResolved,
    AlertResolvedPayload,
    Envelope,
    EventDecodeError,
    EventRetracted,
    Source,
    content_fingerprint,
    decode_event,
    utc_now,
)
from shared.kafka import broker_running, make_broker, publish_events, read_subject_events
from shared.metrics import (
    ALERTS_STORED,
    ESCALATIONS,
    NOTIFICATIONS,
    OPEN_ALERTS,
    OVERDUE_ALERTS,
    TIME_TO_ACKNOWLEDGE,
    UNACKNOWLEDGED_ALERTS,
)
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

log = logging.getLogger(__name__)
RECORD_RETRY_S = 1.0  # while the database is unreachable, between attempts to record a send


class AlertOut(BaseModel):
    alert_id: uuid.UUID
    study_id: str
    site_id: str
    subject_id: str
    rule_id: str
    severity: str
    status: str
    title: str
    detail: str
    occurred_at: datetime
    raised_at: datetime
    due_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_comment: str | None
    escalation_tier: int
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_comment: str | None


class AlertDetailOut(AlertOut):
    history: list[dict]
    notifications: list[dict]


def _storable(text: str) -> str:
    """Text PostgreSQL can store and compare: no NUL character (it refuses one in any text)."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (\\x00)")
    return text


def _utc(instant: datetime) -> datetime:
    """An instant with its offset, in UTC; one that UTC cannot hold (year 1 at +01:00) is
    refused rather than overflowing in the database driver."""
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: not an instant in UTC") from None


# Filters and comments as the API takes them: what the database can hold.
Text = Annotated[str, AfterValidator(_storable)]
Instant = Annotated[AwareDatetime, AfterValidator(_utc)]
MAX_OFFSET = 2**63 - 1  # SQL OFFSET is a bigint


class CommentIn(BaseModel):
    """Who acts is the signed-in user; the body says why."""

    comment: Text = Field("", max_length=2000)


class LoginIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=500)


def site_scope(user: User) -> str | None:
    """The only site a user may see, or None for all."""
    return user.site_id if user.role is Role.SITE_USER else None


def ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def lifecycle_fields(alert: dict, now: datetime, message_id: str) -> dict:
    """Envelope fields of an event about `alert`, recorded now by the alert service."""
    return {
        "study_id": alert["study_id"],
        "site_id": alert["site_id"],
        "subject_id": alert["subject_id"],
        "occurred_at": now,
        "recorded_at": now,
        "causation_id": alert["alert_id"],
        "source": Source(system="safetymon-alerts", message_id=message_id),
    }


def record_open_alerts(unresolved: list[dict], now: datetime) -> None:
    """Gauges of what the desk has in front of it: open (not resolved), of those not yet
    acknowledged, and of those past their reporting deadline."""
    waiting = {status.value for status in OPEN_STATUSES}
    for severity in ("critical", "high", "medium", "low", "info"):
        mine = [a for a in unresolved if a["severity"] == severity]
        unacknowledged = [a for a in mine if a["status"] in waiting]
        OPEN_ALERTS.labels(severity).set(len(mine))
        UNACKNOWLEDGED_ALERTS.labels(severity).set(len(unacknowledged))
        OVERDUE_ALERTS.labels(severity).set(
            sum(1 for a in unacknowledged if a["due_at"] is not None and a["due_at"] <= now)
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, "alerts", settings.log_format)
    broker = make_broker(settings, client_id="safetymon-alerts")
    engine = create_engine(settings.database_url)
    store = AlertStore(engine)
    audit = AuditLog(engine)
    if not settings.users_file:
        raise RuntimeError(
            "USERS_FILE is not set: the alert service needs its users and roles "
            "(format: deploy/users.example.yaml)"
        )
    directory = UserDirectory.load(settings.users_file)  # UserFileError: no start
    sessions = Sessions(directory, settings.session_secret.get_secret_value())
    current_user = user_dependency(directory, sessions)
    physician = require_role(
        Role.SAFETY_PHYSICIAN, current_user=current_user, action="acknowledge or resolve alerts"
    )
    routing = load_routing(settings)  # RoutingError: the service does not start

    mailer = SmtpSender(settings)

    async def send(note: PendingNotification) -> None:
        # The alert's row is all a message needs (its history and deliveries are not).
        alert = await store.get(note.alert_id, history=False)
        if note.channel == EMAIL:
            message = compose_email(
                alert,
                note.recipient,
                str(note.notification_id),
                settings.alert_email_from,
                note.alert_state,
            )
            await mailer.send(message)
        else:
            payload = webhook_payload(alert, note.alert_state, slack=note.channel == "slack")
            await send_webhook(settings, note.recipient, payload, str(note.notification_id))

    async def record_outcome(note: PendingNotification, error: str | None) -> None:
        """Record what became of a claimed notification, waiting out a database outage: one
        claimed and never recorded stays "sending", which nothing retries (the email lost, or,
        if it went out, sent again at the next restart with the alert never "notified")."""
        while True:
            try:
                return await store.mark_notification(note, error, settings.notification_retry_s)
            except Exception as problem:
                if not unreachable(problem):
                    raise
                log.warning(
                    "%s to %s for alert %s: outcome not recorded yet, database unreachable",
                    note.channel,
                    note.recipient,
                    note.alert_id,
                )
                await asyncio.sleep(RECORD_RETRY_S)

    async def deliver(note: PendingNotification) -> None:
        if not await store.claim(note):
            return  # another pass is sending it
        try:
            await send(note)
        except Exception as error:  # any channel failure: record it, retry later, never block
            await record_outcome(note, repr(error)[:1000])
            outcome = "abandoned" if note.attempts + 1 >= MAX_ATTEMPTS else "failed"
            log.log(
                logging.ERROR if outcome == "abandoned" else logging.WARNING,
                "%s to %s for alert %s %s (attempt %d): %r",
                note.channel,
                note.recipient,
                note.alert_id,
                outcome,
                note.attempts + 1,
                error,
            )
            NOTIFICATIONS.labels(note.channel, outcome).inc()
            return
        fault_point("alerts.after-send")  # tests only (services/alerts/faults.py)
        await record_outcome(note, None)
        NOTIFICATIONS.labels(note.channel, "sent").inc()

    async def deliver_all(notes: list[PendingNotification]) -> None:
        # Concurrently: a slow or failing channel never holds up another.
        await asyncio.gather(*(deliver(note) for note in notes))

    async def on_alert_event(event: Envelope) -> None:
        if isinstance(event, AlertRaised):
            p = event.payload
            recipients = routing.recipients_for(p.severity.value, event.site_id, p.rule_id)
            if await store.record_raised(event, recipients):
                ALERTS_STORED.labels(p.severity.value).inc()
                fault_point("alerts.after-store")  # tests only (services/alerts/faults.py)
            await deliver_all(await store.pending_notifications(p.alert_id))
        elif isinstance(event, EventRetracted):
            await store.retract(event)
        elif isinstance(event, AlertAcknowledged | AlertResolved):
            apply = store.acknowledge if isinstance(event, AlertAcknowledged) else store.resolve
            try:
                alert = await store.get(event.payload.alert_id)
                await apply(event, routed_to(alert))
                if isinstance(event, AlertAcknowledged):
                    waited = (event.recorded_at - alert["raised_at"]).total_seconds()
                    TIME_TO_ACKNOWLEDGE.labels(alert["severity"]).observe(max(0.0, waited))
            except AlertNotFound as error:
                raise RejectedEvent(f"{event.event_type} of unknown alert {error}") from error
            except TransitionError:
                pass  # the alert was already taken (or closed) by an earlier event
            await deliver_all(await store.pending_notifications(event.payload.alert_id))
        elif isinstance(event, AlertEscalated):
            with contextlib.suppress(AlertNotFound):
                await store.escalate(event, list(routing.escalation))
            await deliver_all(await store.pending_notifications(event.payload.alert_id))

    subscribe(broker, settings, "alerts", settings.topic(ALERTS), on_alert_event)

    async def retry_failed_notifications() -> None:
        while True:
            await asyncio.sleep(settings.notification_retry_s)
            try:
                await deliver_all(await store.pending_notifications(failed_only=True))
            except Exception:
                log.exception("notification retry pass failed")

    limits = {s: timedelta(minutes=m) for s, m in settings.escalation_minutes.items()}

    async def escalate_overdue() -> None:
        """Every open alert past its time limit (or its reporting deadline) goes up a tier: the
        escalation is recorded in the event log first; its id makes it happen once."""
        now = utc_now()
        open_alerts = await store.open_alerts()
        for alert in open_alerts:
            reason = escalation_due(
                AlertStatus(alert["status"]),
                alert["severity"],
                alert["raised_at"],
                alert["due_at"],
                alert["escalation_tier"],
                limits,
                now,
            )
            if reason is None:
                continue
            tier = alert["escalation_tier"] + 1
            event = AlertEscalated(
                event_id=escalation_id(alert["alert_id"], tier),
                study_id=alert["study_id"],
                site_id=alert["site_id"],
                subject_id=alert["subject_id"],
                occurred_at=now,
                recorded_at=now,
                causation_id=alert["alert_id"],
                source=Source(system="safetymon-alerts", message_id=f"escalate-{tier}"),
                payload=AlertEscalatedPayload(alert_id=alert["alert_id"], tier=tier, reason=reason),
            )
            await publish_events(broker, settings.topic(ALERTS), [event])
            if await store.escalate(event, list(routing.escalation)):
                ESCALATIONS.labels(alert["severity"]).inc()
                await deliver_all(await store.pending_notifications(alert["alert_id"]))
        record_open_alerts(await store.unresolved_alerts(), now)

    async def escalation_loop() -> None:
        while True:
            try:
                await escalate_overdue()
            except Exception:
                log.exception("escalation pass failed")
            await asyncio.sleep(settings.escalation_check_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade_schema, settings.database_url)
        await store.release_unfinished_sends()
        async with broker_running(settings, broker, lag_of={"alerts": [settings.topic(ALERTS)]}):
            loops = [
                asyncio.create_task(retry_failed_notifications()),
                asyncio.create_task(escalation_loop()),
            ]
            settle_heap()
            try:
                yield
            finally:
                for loop in loops:
                    loop.cancel()
        await mailer.close()
        await engine.dispose()

    app = FastAPI(title="safetymon alerts", version="1", lifespan=lifespan)

    async def dependencies_ok() -> dict[str, bool]:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
            database = True
        except Exception:
            database = False
        return {"kafka": await broker.ping(timeout=2.0), "database": database}

    add_operational_routes(app, "alerts", dependencies_ok)
    app.include_router(desk_router(store))

    @app.get("/v1/alerts", response_model=list[AlertOut])
    async def list_alerts(
        request: Request,
        response: Response,
        user: Annotated[User, Depends(current_user)],
        status: Annotated[str, Query(pattern="^(open|all)$")] = "open",
        subject_id: Text | None = None,
        site_id: Text | None = None,
        severity: Annotated[str | None, Query(pattern="^(critical|high|medium|low|info)$")] = None,
        rule_id: Text | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 500,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict]:
        """A page of alerts, most severe first, then oldest first, with the total matching in
        the X-Total-Count header (a site user sees their own site's only)."""
        scope = site_scope(user)
        if scope is not None and site_id not in (None, scope):
            return []  # another site: nothing, as if it had no alerts
        filters = {
            "open_only": status == "open",
            "subject_id": subject_id,
            "site_id": scope or site_id,
            "severity": severity,
            "rule_id": rule_id,
        }
        found = await store.list_alerts(**filters, limit=limit, offset=offset)
        response.headers["X-Total-Count"] = str(await store.count_alerts(**filters))
        # A page polling the same list sees nothing new: audit a list view when what it shows
        # (alerts and their states) differs from this user's last view of that list.
        view = (user.user_id, str(sorted(filters.items())), limit, offset)
        shown = content_fingerprint([(a["alert_id"], a["status"]) for a in found])
        if last_views.get(view) == shown:
            return found
        if len(last_views) > 10_000:  # bounded memory; forgetting only means one more audit row
            last_views.clear()
        last_views[view] = shown
        await audit.record(
            user,
            "alerts.list",
            subject_id=subject_id,
            client_ip=ip(request),
            detail={"filters": {k: v for k, v in filters.items() if v}, "count": len(found)},
        )
        return found

    last_views: dict[tuple, str] = {}

    def routed_to(alert: dict) -> list[Recipient]:
        return routing.recipients_for(alert["severity"], alert["site_id"], alert["rule_id"])

    async def visible_alert(alert_id: uuid.UUID, user: User) -> dict:
        try:
            alert = await store.get(alert_id)
        except AlertNotFound as error:
            raise HTTPException(404, f"no alert {alert_id}") from error
        if not can_see(user, alert["site_id"]):
            raise HTTPException(404, f"no alert {alert_id}")  # not even that it exists
        return alert

    @app.get("/v1/alerts/{alert_id}", response_model=AlertDetailOut)
    async def get_alert(
        alert_id: uuid.UUID, request: Request, user: Annotated[User, Depends(current_user)]
    ) -> dict:
        alert = await visible_alert(alert_id, user)
        await audit.record(
            user,
            "alert.view",
            target=str(alert_id),
            subject_id=alert["subject_id"],
            site_id=alert["site_id"],
            client_ip=ip(request),
        )
        return alert

    @app.get("/v1/subjects/{subject_id}/timeline")
    async def subject_timeline(
        subject_id: Text, request: Request, user: Annotated[User, Depends(current_user)]
    ) -> list[dict]:
        """Labs with grades, adverse events, doses, dose decisions, signals and alerts of one
        subject, oldest first, read from the event log and the alert store."""
        records = []
        for name in (CLINICAL_EVENTS, ASSESSMENTS):
            records += await read_subject_events(settings, settings.topic(name), subject_id)
        events = []
        for raw in records:
            with contextlib.suppress(EventDecodeError):  # poison sits in the dead letters
                events.append(decode_event(raw))
        alerts_of_subject = await store.list_alerts(open_only=False, subject_id=subject_id)
        sites = {e.site_id for e in events} | {a["site_id"] for a in alerts_of_subject}
        if not sites or not all(can_see(user, site) for site in sites):
            raise HTTPException(404, f"no events for subject {subject_id}")
        await audit.record(
            user,
            "subject.timeline",
            subject_id=subject_id,
            site_id=min(sites),
            client_ip=ip(request),
        )
        return timeline(events, alerts_of_subject)

    @app.get("/v1/audit")
    async def audit_export(
        user: Annotated[User, Depends(physician)],
        since: Instant | None = None,
        until: Instant | None = None,
    ) -> list[dict]:
        """The audit log (who viewed or did what, when, from where), oldest first."""
        return await audit.export(since=since, until=until)

    async def take(
        kind: str, alert_id: uuid.UUID, request: Request, user: User, body: CommentIn | None
    ) -> dict:
        """Acknowledge or resolve as `user`: applied under the alert's row lock (409 names who
        got there first), audited, recorded in the event log (a 503 there is safe to retry: the
        same user's action is the same event), announced to the alert's recipients."""
        comment = (body or CommentIn()).comment
        alert = await visible_alert(alert_id, user)
        now = utc_now()
        fields = lifecycle_fields(alert, now, f"{kind}-{alert_id}")
        if kind == "acknowledge":
            event: Envelope = AlertAcknowledged(
                **fields,
                event_id=acknowledgement_id(alert_id, user.user_id),
                payload=AlertAcknowledgedPayload(
                    alert_id=alert_id, acknowledged_by=user.user_id, comment=comment
                ),
            )
            apply = store.acknowledge
        else:
            event = AlertResolved(
                **fields,
                event_id=resolution_id(alert_id, user.user_id),
                payload=AlertResolvedPayload(
                    alert_id=alert_id, resolved_by=user.user_id, comment=comment
                ),
            )
            apply = store.resolve
        try:
            taken = await apply(event, routed_to(alert))
        except TransitionError as error:
            raise HTTPException(409, str(error)) from error
        await audit.record(
            user,
            f"alert.{kind}",
            target=str(alert_id),
            subject_id=alert["subject_id"],
            site_id=alert["site_id"],
            client_ip=ip(request),
            detail={"comment": comment},
        )
        await log_or_503(event, {"acknowledge": "acknowledgement", "resolve": "resolution"}[kind])
        await deliver_all(await store.pending_notifications(alert_id))
        return taken

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut)
    async def acknowledge(
        alert_id: uuid.UUID,
        request: Request,
        user: Annotated[User, Depends(physician)],
        body: Annotated[CommentIn | None, Body()] = None,
    ) -> dict:
        """Take responsibility for an open alert, with an optional comment."""
        return await take("acknowledge", alert_id, request, user, body)

    @app.post("/v1/alerts/{alert_id}/resolve", response_model=AlertOut)
    async def resolve(
        alert_id: uuid.UUID,
        request: Request,
        user: Annotated[User, Depends(physician)],
        body: Annotated[CommentIn | None, Body()] = None,
    ) -> dict:
        """Close an alert, saying why."""
        return await take("resolve", alert_id, request, user, body)

    async def log_or_503(event: Envelope, what: str) -> None:
        try:
            await publish_events(broker, settings.topic(ALERTS), [event])
        except Exception as error:
            log.exception("%s %s not in the event log yet", what, event.event_id)
            raise HTTPException(503, f"event log unavailable: retry the {what}") from error

    @app.post("/auth/login")
    async def login(request: Request, body: Annotated[LoginIn, Body()]) -> JSONResponse:
        """Sign in for the web page: a session cookie (the API also takes bearer tokens)."""
        user = await asyncio.to_thread(directory.authenticate_password, body.user_id, body.password)
        if user is None:
            raise HTTPException(401, "unknown user or wrong password")
        await audit.record(user, "sign-in", client_ip=ip(request))
        response = JSONResponse({"user_id": user.user_id, "role": user.role})
        options = sessions.cookie_options() | {"secure": settings.session_cookie_secure}
        response.set_cookie(SESSION_COOKIE, sessions.issue_session(user), **options)
        return response

    @app.post("/auth/logout")
    async def logout() -> JSONResponse:
        response = JSONResponse({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/auth/me")
    async def me(user: Annotated[User, Depends(current_user)]) -> dict:
        return {"user_id": user.user_id, "role": user.role, "site_id": user.site_id}

    return app
