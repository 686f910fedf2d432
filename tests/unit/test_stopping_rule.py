"""The continuous Bayesian toxicity stopping rule, checked against independent computations."""

import math

import pytest

from shared.protocol import study_protocol
from shared.stopping_rule import MonitoringStatus, StoppingRule

# ../shared/reference/dose_rules.md section 4.2, computed there independently (exact recursion):
# the fewest events among the first n evaluable subjects that stop, n = 1..43 (None: cannot yet).
TABLE_020 = [
    None,
    2,
    3,
    3,
    4,
    4,
    4,
    4,
    5,
    5,
    5,
    6,
    6,
    6,
    7,
    7,
    7,
    7,
    8,
    8,
    8,
    8,
    9,
    9,
    9,
    10,
    10,
    10,
    10,
    11,
    11,
    11,
    11,
    12,
    12,
    12,
    12,
    13,
    13,
    13,
    13,
    14,
    14,
]
TABLE_030 = [
    None,
    None,
    3,
    4,
    4,
    5,
    5,
    5,
    6,
    6,
    7,
    7,
    8,
    8,
    8,
    9,
    9,
    9,
    10,
    10,
    11,
    11,
    11,
    12,
    12,
    13,
    13,
    13,
    14,
    14,
    14,
    15,
    15,
    15,
    16,
    16,
    17,
    17,
    17,
    18,
    18,
    18,
    19,
]


def test_the_boundary_for_a_20_percent_rate_matches_the_published_table() -> None:
    assert StoppingRule(0.4, 1.6, 0.20, 0.95, 43).boundary() == TABLE_020


def test_the_protocol_files_boundary_matches_the_published_table() -> None:
    monitoring = study_protocol("NCT05173246").toxicity_monitoring
    assert monitoring is not None
    assert monitoring.rule().boundary() == TABLE_030


def _posterior_by_integration(a: float, b: float, theta0: float, steps: int = 20_000) -> float:
    """P(theta > theta0) for Beta(a, b) by Simpson's rule on the density (no scipy)."""
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def density(t: float) -> float:
        return math.exp(log_norm + (a - 1) * math.log(t) + (b - 1) * math.log1p(-t))

    h = (1 - theta0) / steps
    inner = sum((4 if i % 2 else 2) * density(theta0 + i * h) for i in range(1, steps))
    # b = prior_b + n - x >= 1.4 > 1 here, so the density is finite (zero) at 1
    edge = density(theta0) + density(1 - 1e-12)
    return h / 3 * (inner + edge)


@pytest.mark.parametrize(("events", "evaluable"), [(3, 3), (5, 10), (9, 20), (14, 43), (0, 5)])
def test_posterior_probabilities_agree_with_direct_integration(events: int, evaluable: int) -> None:
    rule = StoppingRule(0.6, 1.4, 0.30, 0.95, 43)
    a, b = 0.6 + events, 1.4 + evaluable - events
    assert rule.posterior_probability(events, evaluable) == pytest.approx(
        _posterior_by_integration(a, b, 0.30), abs=1e-6
    )


def test_the_status_turns_to_stop_exactly_at_the_boundary() -> None:
    rule = StoppingRule(0.6, 1.4, 0.30, 0.95, 43)
    assert rule.status(5, 10) is MonitoringStatus.CONTINUE  # boundary at n = 10 is 6
    assert rule.status(6, 10) is MonitoringStatus.STOP


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="4 events among 3 evaluable subjects"):
        StoppingRule(0.6, 1.4, 0.30, 0.95, 43).posterior_probability(4, 3)


def test_the_command_prints_the_table_and_the_status(capsys: pytest.CaptureFixture) -> None:
    from services.cli import main

    assert main(["stopping-boundary", "--events", "6", "--evaluable", "10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "          10  >= 6" in out
    assert out[-1] == "6 of 10: P = 0.962 -> stop boundary crossed"
