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


def grader(poll_interval_s: int = 300) -> Grader:
    settings = Settings(CONSUMER_MAX_POLL_INTERVAL_S=poll_interval_s)
    return Grader(settings, study_protocol(settings.study_id, settings.protocol_file), None)


def observed(le: str | None = None) -> float:
    if le is None:
        return REGISTRY.get_sample_value(f"{REBUILDS}_count") or 0.0
    return REGISTRY.get_sample_value(f"{REBUILDS}_bucket", {"le": le}) or 0.0


def test_a_rebuild_within_the_warning_time_is_timed_and_logged_as_information(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, quick_before = observed(), observed("120.0")
    with caplog.at_level(logging.INFO, "services.ctcae_grader.app"):
        grader()._rebuilt(partition=3, offset=1200, subjects=40, took=119.0)

    assert (observed(), observed("120.0")) == (before + 1, quick_before + 1)
    (record,) = [r for r in caplog.records if "state rebuilt" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert (
        record.getMessage() == "partition 3 state rebuilt below offset 1200 in 119.0 s: 40 subjects"
    )


def test_a_rebuild_over_two_fifths_of_the_poll_interval_warns_and_says_where_to_look(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before, quick_before = observed(), observed("120.0")
    with caplog.at_level(logging.INFO, "services.ctcae_grader.app"):
        grader()._rebuilt(partition=3, offset=1200, subjects=40, took=121.0)

    assert (observed(), observed("120.0")) == (before + 1, quick_before)  # beyond the alert's le
    (record,) = [r for r in caplog.records if "state rebuilt" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "poll interval (300 s)" in record.getMessage()
    assert "SafetymonGraderStateRebuildSlow" in record.getMessage()


def test_the_warning_follows_the_configured_poll_interval(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "services.ctcae_grader.app"):
        grader(poll_interval_s=900)._rebuilt(partition=0, offset=5, subjects=2, took=300.0)
        grader(poll_interval_s=900)._rebuilt(partition=0, offset=5, subjects=2, took=361.0)

    levels = [r.levelno for r in caplog.records if "state rebuilt" in r.getMessage()]
    assert levels == [logging.INFO, logging.WARNING]
