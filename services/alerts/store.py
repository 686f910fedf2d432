"""The alert store: idempotent writes keyed by alert, event and notification ids."""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Row, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts.db import alert_events, alerts, delivery_attempts, notifications
from services.alerts.domain import (
    OPEN_STATUSES,
    AlertStatus,
    after_acknowledged,
    after_notified,
    after_resolved,
)
from services.alerts.routing import Recipient
from shared.events import (
    SEVERITY_RANK,
    AlertAcknowledged,
    AlertEscalated,
    AlertRaised,
    AlertResolved,
    Envelope,
    EventRetracted,
    derive_id,
    utc_now,
)

EMAIL = "email"
MAX_ATTEMPTS = 20  # then the delivery is abandoned, logged as an error and counted


@dataclass(frozen=True)
class PendingNotification:
    notification_id: uuid.UUID
    alert_id: uuid.UUID
    recipient: str
    attempts: int
    alert_state: str = "raised"  # the state change it announces: raised, escalated-1, ...
    channel: str = EMAIL


class AlertNotFound(LookupError):
    pass


def _insert_ignoring_duplicates(connection: AsyncConnection, table):
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class AlertStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record_raised(self, event: AlertRaised, recipients: list[Recipient]) -> bool:
        """Store a raised alert and queue one email per recipient, all or nothing.
        Returns False when the alert was already stored (a redelivery)."""
        p = event.payload
        async with self.engine.begin() as conn:
            stored = await conn.execute(
                _insert_ignoring_duplicates(conn, alerts).values(
                    alert_id=p.alert_id,
                    study_id=event.study_id,
                    site_id=event.site_id,
                    subject_id=event.subject_id,
                    rule_id=p.rule_id,
                    severity=p.severity.value,
                    status=AlertStatus.RAISED.value,
                    title=p.title,
                    detail=p.detail,
                    trigger_event_id=p.trigger_event_id,
                    occurred_at=event.occurred_at,
                    raised_at=event.recorded_at,
                    due_at=p.due_at,
                    updated_at=utc_now(),
                )
            )
            if stored.rowcount == 0:
                return False
            await self._append_event(conn, event, p.alert_id, actor=None)
            await self._queue(conn, p.alert_id, AlertStatus.RAISED.value, recipients)
        return True

    async def _queue(
        self, conn: AsyncConnection, alert_id: uuid.UUID, state: str, recipients: list[Recipient]
    ) -> None:
        """One notification per recipient per alert state change: the id says which, so a
        redelivered event or a restart queues nothing twice."""
        for recipient in recipients:
            await conn.execute(
                _insert_ignoring_duplicates(conn, notifications).values(
                    notification_id=derive_id(
                        "notification", str(alert_id), state, recipient.channel, recipient.to
                    ),
                    alert_id=alert_id,
                    alert_state=state,
                    channel=recipient.channel,
                    recipient=recipient.to,
                    status="pending",
                    attempts=0,
                    created_at=utc_now(),
                )
            )

    async def resolve(self, event: AlertResolved, recipients: list[Recipient] = ()) -> dict:
        """Close an alert, and tell `recipients`; the same event twice changes nothing."""
        p = event.payload
        return await self._transition(
            event,
            p.alert_id,
            p.resolved_by,
            lambda row: after_resolved(AlertStatus(row.status), row.resolved_by),
            {
                "resolved_by": p.resolved_by,
                "resolved_at": event.recorded_at,
                "resolution_comment": p.comment,
            },
            recipients,
        )

    async def escalate(self, event: AlertEscalated, recipients: list[Recipient]) -> bool:
        """Raise an open alert to the event's tier and queue its emails; False when that tier
        was already reached or the alert is no longer open."""
        p = event.payload
        async with self.engine.begin() as conn:
            row = await self._lock_alert(conn, p.alert_id)
            stale = row.escalation_tier >= p.tier or AlertStatus(row.status) not in OPEN_STATUSES
            if stale or await self._has_event(conn, event.event_id):
                return False
            await conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == p.alert_id)
                .values(escalation_tier=p.tier, updated_at=utc_now())
            )
            await self._append_event(conn, event, p.alert_id, actor=None)
            await self._queue(conn, p.alert_id, f"escalated-{p.tier}", recipients)
            return True

    async def open_alerts(self) -> list[dict]:
        async with self.engine.connect() as conn:
            query = select(alerts).where(alerts.c.status.in_([s.value for s in OPEN_STATUSES]))
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def unresolved_alerts(self) -> list[dict]:
        """Alerts still in front of the desk: not resolved, not retracted."""
        statuses = [s.value for s in (*OPEN_STATUSES, AlertStatus.ACKNOWLEDGED)]
        async with self.engine.connect() as conn:
            query = select(alerts).where(alerts.c.status.in_(statuses))
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def acknowledge(self, event: AlertAcknowledged, recipients: list[Recipient] = ()) -> dict:
        """Apply an acknowledgement, and tell `recipients` who took it; the same event twice
        changes nothing."""
        p = event.payload
        return await self._transition(
            event,
            p.alert_id,
            p.acknowledged_by,
            lambda row: after_acknowledged(AlertStatus(row.status), row.acknowledged_by),
            {
                "acknowledged_by": p.acknowledged_by,
                "acknowledged_at": event.recorded_at,
                "acknowledgement_comment": p.comment,
            },
            recipients,
        )

    async def _transition(
        self,
        event: Envelope,
        alert_id: uuid.UUID,
        actor: str,
        next_status: Callable[[Row], AlertStatus],
        columns: dict[str, object],
        recipients: Sequence[Recipient],
    ) -> dict:
        """Move an alert under a row lock: `next_status` refuses a transition not allowed (raises
        TransitionError); a retry of an event already applied returns the alert unchanged."""
        async with self.engine.begin() as conn:
            row = await self._lock_alert(conn, alert_id)
            if await self._has_event(conn, event.event_id):
                return dict(row._mapping)
            status = next_status(row)
            await conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == alert_id)
                .values(status=status.value, updated_at=utc_now(), **columns)
            )
            await self._append_event(conn, event, alert_id, actor=actor)
            await self._queue(conn, alert_id, status.value, list(recipients))
            return dict((await self._lock_alert(conn, alert_id))._mapping)

    async def retract(self, event: EventRetracted) -> bool:
        """Close the alert whose raising `event` retracts; False when it is not an alert of ours
        (a retraction of something else, on the alerts topic, changes nothing here)."""
        raised_id = event.payload.retracted_event_id
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    select(alert_events.c.alert_id).where(
                        alert_events.c.event_id == raised_id,
                        alert_events.c.event_type == "AlertRaised",
                    )
                )
            ).first()
            if found is None:
                return False
            await self._lock_alert(conn, found.alert_id)
            if await self._has_event(conn, event.event_id):
                return True
            await conn.execute(
                update(alerts)
                .where(alerts.c.alert_id == found.alert_id)
                .values(status=AlertStatus.RETRACTED.value, updated_at=utc_now())
            )
            await self._append_event(conn, event, found.alert_id, actor=None)
            return True

    async def pending_notifications(
        self, alert_id: uuid.UUID | None = None, failed_only: bool = False
    ) -> list[PendingNotification]:
        """Notifications still to send. The retry pass takes only failed ones: a pending one
        is being sent by the consumer that stored it (or is redelivered with its message)."""
        wanted = ("failed",) if failed_only else ("pending", "failed")
        query = select(notifications).where(notifications.c.status.in_(wanted))
        if failed_only:  # only those whose backoff has run out
            query = query.where(notifications.c.next_attempt_at <= utc_now())
        if alert_id is not None:
            query = query.where(notifications.c.alert_id == alert_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(notifications.c.created_at))).all()
        return [
            PendingNotification(
                r.notification_id, r.alert_id, r.recipient, r.attempts, r.alert_state, r.channel
            )
            for r in rows
        ]

    async def claim(self, note: PendingNotification) -> bool:
        """Take a notification for sending; False when another sender has it (the consumer and
        the retry or escalation pass may reach the same one): only the claimer sends."""
        async with self.engine.begin() as conn:
            claimed = await conn.execute(
                update(notifications)
                .where(
                    notifications.c.notification_id == note.notification_id,
                    notifications.c.status.in_(("pending", "failed")),
                )
                .values(status="sending")
            )
            return claimed.rowcount == 1

    async def release_unfinished_sends(self) -> int:
        """At start-up no send is in flight: one cut off by a crash is pending again."""
        async with self.engine.begin() as conn:
            released = await conn.execute(
                update(notifications)
                .where(notifications.c.status == "sending")
                .values(status="pending")
            )
            return released.rowcount

    async def mark_notification(
        self, note: PendingNotification, error: str | None, backoff_s: float = 15.0
    ) -> None:
        """Record a delivery attempt. A failure is tried again after a backoff that doubles with
        every attempt (capped at an hour), and abandoned after MAX_ATTEMPTS."""
        async with self.engine.begin() as conn:
            attempts = note.attempts + 1
            values: dict = {"attempts": attempts, "last_error": error}
            if error is None:
                values |= {"status": "sent", "sent_at": utc_now()}
            else:
                wait = min(backoff_s * 2 ** (attempts - 1), 3600.0)
                values |= {
                    "status": "abandoned" if attempts >= MAX_ATTEMPTS else "failed",
                    "next_attempt_at": utc_now() + timedelta(seconds=wait),
                }
            await conn.execute(
                update(notifications)
                .where(notifications.c.notification_id == note.notification_id)
                .values(**values)
            )
            await conn.execute(
                insert(delivery_attempts).values(
                    attempt_id=derive_id("attempt", str(note.notification_id), str(attempts)),
                    notification_id=note.notification_id,
                    attempt=attempts,
                    at=utc_now(),
                    outcome=values["status"],
                    error=error,
                )
            )
            if error is None:
                row = await self._lock_alert(conn, note.alert_id)
                status = after_notified(AlertStatus(row.status))
                await conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == note.alert_id)
                    .values(status=status.value, updated_at=utc_now())
                )

    async def get(self, alert_id: uuid.UUID, *, history: bool = True) -> dict:
        """The alert with its event history and every delivery (attempts included); with
        `history=False` its row alone, one query instead of four (what an email needs)."""
        async with self.engine.connect() as conn:
            row = await self._lock_alert(conn, alert_id, lock=False)
            if not history:
                return dict(row._mapping)
            events = (
                await conn.execute(
                    select(
                        alert_events.c.event_type, alert_events.c.recorded_at, alert_events.c.actor
                    )
                    .where(alert_events.c.alert_id == alert_id)
                    .order_by(alert_events.c.recorded_at)
                )
            ).all()
            deliveries = (
                await conn.execute(
                    select(
                        notifications.c.notification_id,
                        notifications.c.alert_state,
                        notifications.c.channel,
                        notifications.c.recipient,
                        notifications.c.status,
                        notifications.c.attempts,
                        notifications.c.last_error,
                        notifications.c.sent_at,
                    ).where(notifications.c.alert_id == alert_id)
                )
            ).all()
            tries = (
                await conn.execute(
                    select(delivery_attempts)
                    .join(notifications)
                    .where(notifications.c.alert_id == alert_id)
                    .order_by(delivery_attempts.c.at)
                )
            ).all()
        attempts_of: dict[uuid.UUID, list[dict]] = {}
        for attempt in tries:
            attempts_of.setdefault(attempt.notification_id, []).append(
                {
                    "attempt": attempt.attempt,
                    "at": attempt.at,
                    "outcome": attempt.outcome,
                    "error": attempt.error,
                }
            )
        return dict(row._mapping) | {
            "history": [dict(h._mapping) for h in events],
            "notifications": [
                dict(d._mapping) | {"attempt_log": attempts_of.get(d.notification_id, [])}
                for d in deliveries
            ],
        }

    async def list_alerts(
        self,
        open_only: bool = True,
        subject_id: str | None = None,
        limit: int = 500,
        site_id: str | None = None,
        severity: str | None = None,
        rule_id: str | None = None,
        offset: int = 0,
    ) -> list[dict]:
        """A page of alerts, most severe first, then oldest first."""
        severity_order = case(
            {severity.value: rank for severity, rank in SEVERITY_RANK.items()},
            value=alerts.c.severity,
        )
        query = self._filtered(select(alerts), open_only, subject_id, site_id, severity, rule_id)
        query = query.order_by(severity_order, alerts.c.raised_at, alerts.c.alert_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(limit).offset(offset))).all()
            return [dict(r._mapping) for r in rows]

    async def count_alerts(
        self,
        open_only: bool = True,
        subject_id: str | None = None,
        site_id: str | None = None,
        severity: str | None = None,
        rule_id: str | None = None,
    ) -> int:
        query = self._filtered(
            select(func.count()).select_from(alerts),
            open_only,
            subject_id,
            site_id,
            severity,
            rule_id,
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    @staticmethod
    def _filtered(query, open_only, subject_id, site_id, severity, rule_id):
        if open_only:
            query = query.where(alerts.c.status.in_([s.value for s in OPEN_STATUSES]))
        for column, value in (
            ("subject_id", subject_id),
            ("site_id", site_id),
            ("severity", severity),
            ("rule_id", rule_id),
        ):
            if value:
                query = query.where(alerts.c[column] == value)
        return query

    async def _lock_alert(self, conn: AsyncConnection, alert_id: uuid.UUID, lock: bool = True):
        query = select(alerts).where(alerts.c.alert_id == alert_id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise AlertNotFound(str(alert_id))
        return row

    async def _has_event(self, conn: AsyncConnection, event_id: uuid.UUID) -> bool:
        query = select(alert_events.c.event_id).where(alert_events.c.event_id == event_id)
        return (await conn.execute(query)).first() is not None

    async def _append_event(
        self, conn: AsyncConnection, event: Envelope, alert_id: uuid.UUID, actor: str | None
    ) -> None:
        await conn.execute(
            _insert_ignoring_duplicates(conn, alert_events).values(
                event_id=event.event_id,
                alert_id=alert_id,
                event_type=event.event_type,
                recorded_at=event.recorded_at,
                actor=actor,
                event=event.model_dump(mode="json"),
            )
        )
