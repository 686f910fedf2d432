"""The alert lifecycle as a pure state machine: an alert's status is a fold over its events."""

from enum import StrEnum


class AlertStatus(StrEnum):
    RAISED = "raised"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


OPEN_STATUSES = (AlertStatus.RAISED, AlertStatus.NOTIFIED)


class TransitionError(ValueError):
    """An action the alert's current status does not allow."""


def after_notified(status: AlertStatus) -> AlertStatus:
    # A notification sent late must not reopen an alert someone already took.
    return AlertStatus.NOTIFIED if status is AlertStatus.RAISED else status


def after_acknowledged(status: AlertStatus) -> AlertStatus:
    if status not in OPEN_STATUSES:
        raise TransitionError(f"alert is {status.value}; only an open alert can be acknowledged")
    return AlertStatus.ACKNOWLEDGED
