"""Continuous Bayesian monitoring of a toxicity rate (beta-binomial).

With a Beta(a, b) prior on the rate of the protocol-defined toxicity, after x events among n
evaluable subjects the posterior is Beta(a + x, b + n - x). Enrolment stops once
P(rate > maximum acceptable rate | x, n) exceeds the threshold. The boundary is the smallest x
that crosses it at each n. Source: the one-outcome form of Thall, Simon & Estey (1995), as worked
in ../shared/reference/dose_rules.md section 4.2 (S26), whose table the tests reproduce.
"""

from dataclasses import dataclass
from enum import StrEnum

from scipy.stats import beta


class MonitoringStatus(StrEnum):
    CONTINUE = "continue"
    STOP = "stop boundary crossed"


@dataclass(frozen=True)
class StoppingRule:
    prior_a: float
    prior_b: float
    max_acceptable_rate: float
    posterior_threshold: float
    max_subjects: int

    def posterior_probability(self, events: int, evaluable: int) -> float:
        """P(rate > maximum acceptable rate | events among evaluable subjects)."""
        if not 0 <= events <= evaluable:
            raise ValueError(f"{events} events among {evaluable} evaluable subjects")
        a = self.prior_a + events
        b = self.prior_b + evaluable - events
        return float(beta.sf(self.max_acceptable_rate, a, b))

    def boundary(self) -> list[int | None]:
        """For n = 1..max_subjects, the fewest events that stop the trial (None: cannot yet)."""
        table = []
        for n in range(1, self.max_subjects + 1):
            crossing = (
                x
                for x in range(n + 1)
                if self.posterior_probability(x, n) > self.posterior_threshold
            )
            table.append(next(crossing, None))
        return table

    def status(self, events: int, evaluable: int) -> MonitoringStatus:
        crossed = self.posterior_probability(events, evaluable) > self.posterior_threshold
        return MonitoringStatus.STOP if crossed else MonitoringStatus.CONTINUE
