"""The alert lifecycle as a pure state machine: an alert's status is a fold over its events."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from shared.events import derive_id


class AlertStatus(StrEnum):
    RAISED = "raised"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    RETRACTED = "retracted"  # the data behind it was corrected or withdrawn


OPEN_STATUSES = (AlertStatus.RAISED, AlertStatus.NOTIFIED)


class TransitionError(ValueError):
    """An action the alert's current status does not allow."""


def after_notified(status: AlertStatus) -> AlertStatus:
    # A notification sent late must not reopen an alert someone already took.
    return AlertStatus.NOTIFIED if status is AlertStatus.RAISED else status


def after_acknowledged(status: AlertStatus, taken_by: str | None = None) -> AlertStatus:
    if status not in OPEN_STATUSES:
        by = f" by {taken_by}" if taken_by else ""
        raise TransitionError(
            f"alert is {status.value}{by}; only an open alert can be acknowledged"
        )
    return AlertStatus.ACKNOWLEDGED


def acknowledgement_id(alert_id: UUID, user: str) -> UUID:
    """One acknowledgement per user and alert: a retry by the same user is the same event; a
    second user's is a different one, which the store refuses once the alert is taken."""
    return derive_id("AlertAcknowledged", str(alert_id), user)


def after_resolved(status: AlertStatus, closed_by: str | None = None) -> AlertStatus:
    if status in (AlertStatus.RESOLVED, AlertStatus.RETRACTED):
        by = f" by {closed_by}" if closed_by and status is AlertStatus.RESOLVED else ""
        raise TransitionError(f"alert is already {status.value}{by}")
    return AlertStatus.RESOLVED


def resolution_id(alert_id: UUID, user: str) -> UUID:
    """A retry by the same user is the same event; another user's is refused once resolved."""
    return derive_id("AlertResolved", str(alert_id), user)


def escalation_id(alert_id: UUID, tier: int) -> UUID:
    """Each tier is reached once, however often the check runs or the service restarts."""
    return derive_id("AlertEscalated", str(alert_id), str(tier))


def escalation_due(
    status: AlertStatus,
    severity: str,
    raised_at: datetime,
    due_at: datetime | None,
    tier: int,
    limits: Mapping[str, timedelta],
    now: datetime,
    tiers: int = 1,
) -> str | None:
    """Why an alert should go up one tier now, or None. Unacknowledged past its severity's time
    limit (one more limit per tier already reached), or a reporting deadline passed while open;
    never beyond the last of `tiers` escalation tiers."""
    if status not in OPEN_STATUSES or tier >= tiers:
        return None
    limit = limits.get(severity)
    if limit is not None and now >= raised_at + limit * (tier + 1):
        minutes = int(limit.total_seconds() // 60) * (tier + 1)
        return f"not acknowledged within {minutes} min ({severity})"
    if due_at is not None and now >= due_at and tier == 0:
        return f"reporting deadline {due_at:%Y-%m-%d %H:%M %Z} passed while open"
    return None
