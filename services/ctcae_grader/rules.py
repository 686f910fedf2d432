"""Protocol dose rules for NCT05173246 that the grader applies now, as data.

Source of both thresholds: ../shared/reference/dose_rules.md section 2.6, RT-1 ("chemotherapy day 1
needs ANC >= 1.5 x10^9/L and PLT >= 100 x10^9/L; otherwise delay and recheck"), from the
nab-paclitaxel US label (Abraxane USPI section 2, dose-modification table). The trial protocol is
not public: label default, confirm against protocol.
"""

from dataclasses import dataclass
from decimal import Decimal

from shared.events import CHEMOTHERAPY, DoseAction, Drug, Severity
from shared.labs import LabTest

RETREATMENT_SOURCE = (
    "dose_rules.md RT-1 / NP-1: Abraxane USPI sec. 2 day-1 retreatment thresholds "
    "(label default, confirm against protocol)"
)


@dataclass(frozen=True)
class Day1HoldRule:
    """On a cycle's day-1 sample, a count below `minimum` (SI unit) holds the listed drugs."""

    rule_id: str
    test: LabTest
    minimum: Decimal
    drugs: tuple[Drug, ...]
    action: DoseAction
    severity: Severity
    source: str


DAY1_HOLD_RULES: tuple[Day1HoldRule, ...] = (
    Day1HoldRule(
        "D1-ANC-HOLD",
        LabTest.ANC,
        Decimal("1.5"),
        CHEMOTHERAPY,
        DoseAction.HOLD,
        Severity.HIGH,
        RETREATMENT_SOURCE,
    ),
    Day1HoldRule(
        "D1-PLT-HOLD",
        LabTest.PLATELETS,
        Decimal("100"),
        CHEMOTHERAPY,
        DoseAction.HOLD,
        Severity.HIGH,
        RETREATMENT_SOURCE,
    ),
)

# Alert rules on grades and adverse events: what the safety desk must see at once.
LAB_GRADE_ALERT_MIN = 3  # CTCAE grade >= 3 laboratory abnormality
AE_GRADE_ALERT_MIN = 3  # CTCAE grade >= 3 adverse event
IRAE_GRADE_ALERT_MIN = 2  # immune-related AE grade >= 2: toripalimab withhold territory (label)
SAE_REPORTING_HOURS = 24  # ICH E2A / 21 CFR 312.32: sponsor's expedited-reporting clock
