"""The alert lifecycle state machine."""

import pytest

from services.alerts.domain import AlertStatus, TransitionError, after_acknowledged, after_notified


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
