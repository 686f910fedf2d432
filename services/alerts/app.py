"""Alert service: stores raised alerts, emails the safety desk, lists and acknowledges alerts."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy import text

from services.alerts.db import create_engine, upgrade_schema
from services.alerts.domain import TransitionError
from services.alerts.notify import compose_email, send_email
from services.alerts.store import AlertNotFound, AlertStore, PendingNotification, is_open
from services.common.consumer import RejectedEvent, subscribe
from services.common.http import add_operational_routes, configure_logging
from shared.events import (
    AlertAcknowledged,
    AlertAcknowledgedPayload,
    AlertRaised,
    Envelope,
    Source,
    derive_id,
    utc_now,
)
from shared.kafka import broker_running, make_broker, publish_events
from shared.metrics import ALERTS_STORED, NOTIFICATIONS
from shared.settings import Settings, get_settings
from shared.topics import ALERTS

log = logging.getLogger(__name__)


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


class AlertDetailOut(AlertOut):
    history: list[dict]
    notifications: list[dict]


class AcknowledgementIn(BaseModel):
    acknowledged_by: str = Field(min_length=1, max_length=200, description="user id, not a name")
    comment: str = Field("", max_length=2000)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    broker = make_broker(settings, client_id="safetymon-alerts")
    engine = create_engine(settings.database_url)
    store = AlertStore(engine)

    async def deliver(note: PendingNotification) -> None:
        alert = await store.get(note.alert_id)
        message = compose_email(
            alert, note.recipient, str(note.notification_id), settings.alert_email_from
        )
        try:
            await send_email(settings, message)
        except Exception as error:  # any SMTP failure: record it, retry later, never block
            log.warning("email for alert %s to %s failed: %r", note.alert_id, note.recipient, error)
            await store.mark_notification(note, repr(error)[:1000])
            NOTIFICATIONS.labels("email", "failed").inc()
            return
        await store.mark_notification(note, None)
        NOTIFICATIONS.labels("email", "sent").inc()

    async def on_alert_event(event: Envelope) -> None:
        if isinstance(event, AlertRaised):
            if await store.record_raised(event, settings.alert_email_recipients):
                ALERTS_STORED.labels(event.payload.severity.value).inc()
            for note in await store.pending_notifications(event.payload.alert_id):
                await deliver(note)
        elif isinstance(event, AlertAcknowledged):
            try:
                await store.acknowledge(event)
            except AlertNotFound as error:
                raise RejectedEvent(f"acknowledgement of unknown alert {error}") from error
            except TransitionError:
                pass  # the alert was already taken by an earlier acknowledgement

    subscribe(broker, settings, "alerts", settings.topic(ALERTS), on_alert_event)

    async def retry_failed_notifications() -> None:
        while True:
            await asyncio.sleep(settings.notification_retry_s)
            try:
                for note in await store.pending_notifications():
                    await deliver(note)
            except Exception:
                log.exception("notification retry pass failed")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade_schema, settings.database_url)
        async with broker_running(settings, broker):
            retrier = asyncio.create_task(retry_failed_notifications())
            yield
            retrier.cancel()
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

    @app.get("/v1/alerts", response_model=list[AlertOut])
    async def list_alerts(
        status: Annotated[str, Query(pattern="^(open|all)$")] = "open",
        subject_id: str | None = None,
    ) -> list[dict]:
        """Alerts, most severe first, then oldest first."""
        return await store.list_alerts(open_only=status == "open", subject_id=subject_id)

    @app.get("/v1/alerts/{alert_id}", response_model=AlertDetailOut)
    async def get_alert(alert_id: uuid.UUID) -> dict:
        try:
            return await store.get(alert_id)
        except AlertNotFound as error:
            raise HTTPException(404, f"no alert {alert_id}") from error

    @app.post("/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut)
    async def acknowledge(alert_id: uuid.UUID, body: Annotated[AcknowledgementIn, Body()]) -> dict:
        """Take responsibility for an open alert. The acknowledgement is recorded in the event
        log first, then applied to the store."""
        try:
            alert = await store.get(alert_id)
        except AlertNotFound as error:
            raise HTTPException(404, f"no alert {alert_id}") from error
        if not is_open(alert):
            raise HTTPException(
                409,
                f"alert is {alert['status']}"
                + (
                    f" (by {alert['acknowledged_by']} at {alert['acknowledged_at']:%Y-%m-%d %H:%M})"
                    if alert["acknowledged_by"]
                    else ""
                ),
            )
        event = AlertAcknowledged(
            event_id=derive_id("AlertAcknowledged", str(alert_id)),
            study_id=alert["study_id"],
            site_id=alert["site_id"],
            subject_id=alert["subject_id"],
            occurred_at=utc_now(),
            recorded_at=utc_now(),
            causation_id=alert["alert_id"],
            source=Source(system="safetymon-alerts", message_id=f"ack-{alert_id}"),
            payload=AlertAcknowledgedPayload(alert_id=alert_id, **body.model_dump()),
        )
        try:
            await publish_events(broker, settings.topic(ALERTS), [event])
        except Exception as error:
            raise HTTPException(503, f"event log unavailable, retry: {error!r}") from error
        return await store.acknowledge(event)  # the consumer applies it too; either is a no-op

    return app
