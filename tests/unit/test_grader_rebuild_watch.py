"""Each rebuild of a partition's subject state is timed for Prometheus and logged; one that
takes more than 0.4 of the consumer's poll interval is a warning naming the runbook section (past
the interval the grader is evicted from its group before the rebuild ends)."""

import logging

import pytest
from prometheus_client import REGISTRY

from services.ctcae_grader.app import Grader
from shared.protocol import study_protocol
from shared.settings import Settings

REBUILDS = "safetymon_grader_state_rebuild_seconds"


def rebuilt(
    caplog: pytest.LogCaptureFixture, took: float, poll_interval_s: int = 300
) -> logging.LogRecord:
    """The log record of a rebuild of partition 3 below offset 1200 (40 subjects) that took
    `took` seconds, on a grader with that poll interval."""
    settings = Settings(CONSUMER_MAX_POLL_INTERVAL_S=poll_interval_s)
    grader = Grader(settings, study_protocol(settings.study_id, settings.protocol_file), None)
    caplog.clear()
    with caplog.at_level(logging.INFO, "services.ctcae_grader.app"):
        grader._rebuilt(partition=3, offset=1200, subjects=40, took=took)
    (record,) = [r for r in caplog.records if "state rebuilt" in r.getMessage()]
    return record


def observed(le: str | None = None) -> float:
    if le is None:
        return REGISTRY.get_sample_value(f"{REBUILDS}_count") or 0.0
    return REGISTRY.get_sample_value(f"{REBUILDS}_bucket", {"le": le}) or 0.0


def test_a_rebuild_within_the_warning_time_is_timed_and_logged_as_information(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, quick_before = observed(), observed("120.0")
    record = rebuilt(caplog, took=119.0)

    assert (observed(), observed("120.0")) == (before + 1, quick_before + 1)
    assert record.levelno == logging.INFO
    expected = "partition 3 state rebuilt below offset 1200 in 119.0 s: 40 subjects"
    assert record.getMessage() == expected


def test_a_rebuild_over_two_fifths_of_the_poll_interval_warns_and_says_where_to_look(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, quick_before = observed(), observed("120.0")
    record = rebuilt(caplog, took=121.0)

    assert (observed(), observed("120.0")) == (before + 1, quick_before)  # beyond the alert's le
    assert record.levelno == logging.WARNING
    assert "poll interval (300 s)" in record.getMessage()
    assert "SafetymonGraderStateRebuildSlow" in record.getMessage()


def test_the_warning_follows_the_configured_poll_interval(caplog: pytest.LogCaptureFixture) -> None:
    assert rebuilt(caplog, took=300.0, poll_interval_s=900).levelno == logging.INFO
    assert rebuilt(caplog, took=361.0, poll_interval_s=900).levelno == logging.WARNING
