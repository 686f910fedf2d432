"""The alert lifecycle as a pure state machine: an alert's status is a fold over its events."""

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
