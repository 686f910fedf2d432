"""The alert lifecycle state machine."""

from datetime import UTC, datetime, timedelta

import pytest

from services.alerts.domain import (
    AlertStatus,
    TransitionError,
    after_acknowledged,
    after_notified,
    after_resolved,
    escalation_due,
)


def test_notification_moves_a_raised_alert_to_notified() -> None:
    assert after_notified(AlertStatus.RAISED) is AlertStatus.NOTIFIED


def test_a_late_notification_does_not_reopen_an_acknowledged_alert() -> None:
    assert after_notified(AlertStatus.ACKNOWLEDGED) is AlertStatus.ACKNOWLEDGED


@pytest.mark.parametrize("status", [AlertStatus.RAISED, AlertStatus.NOTIFIED])
def test_an_open_alert_can_be_acknowledged(status: AlertStatus) -> None:
    assert after_acknowledged(status) is AlertStatus.ACKNOWLEDGED


@pytest.mark.parametrize("status", [AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED])
def test_a_taken_alert_cannot_be_acknowledged_again(status: AlertStatus) -> None:
    with pytest.raises(TransitionError, match=f"alert is {status.value}"):
        after_acknowledged(status)


RAISED = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LIMITS = {"critical": timedelta(minutes=15), "high": timedelta(hours=2)}


def due(status=AlertStatus.NOTIFIED, severity="critical", minutes=15.0, due_at=None, tier=0):
    return escalation_due(
        status, severity, RAISED, due_at, tier, LIMITS, RAISED + timedelta(minutes=minutes)
    )


def test_an_unacknowledged_critical_alert_escalates_at_its_limit_not_before() -> None:
    assert due(minutes=14.9) is None
    assert due(minutes=15) == "not acknowledged within 15 min (critical)"


def test_a_high_alert_has_two_hours() -> None:
    assert due(severity="high", minutes=119) is None
    assert due(severity="high", minutes=120) is not None


def test_an_acknowledged_alert_never_escalates() -> None:
    assert due(status=AlertStatus.ACKNOWLEDGED, minutes=600) is None


def test_an_alert_escalates_once() -> None:
    assert due(minutes=600, tier=1) is None


def test_a_passed_reporting_deadline_escalates_an_open_alert() -> None:
    reason = due(severity="medium", minutes=1, due_at=RAISED)
    assert reason is not None and reason.startswith("reporting deadline")


@pytest.mark.parametrize("status", [AlertStatus.RESOLVED, AlertStatus.RETRACTED])
def test_a_closed_alert_cannot_be_resolved_again(status: AlertStatus) -> None:
    with pytest.raises(TransitionError, match=f"already {status.value}"):
        after_resolved(status)


def test_resolving_again_names_who_closed_it() -> None:
    with pytest.raises(TransitionError, match="already resolved by safety-physician-01"):
        after_resolved(AlertStatus.RESOLVED, "safety-physician-01")
