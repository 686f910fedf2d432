"""Topic names, in one place. Every topic is keyed by subject id, so one patient's events keep
their order within a partition."""

from dataclasses import dataclass

CLINICAL_EVENTS = "safety.clinical-events.v1"  # facts from ingest
ASSESSMENTS = "safety.assessments.v1"  # LabGraded, DoseDecisionMade, SafetySignalDetected
ALERTS = "safety.alerts.v1"  # AlertRaised and the alert lifecycle
DEAD_LETTERS = "safety.dead-letters.v1"  # messages a consumer could not take, with the reason

ALL_TOPICS: tuple[str, ...] = (CLINICAL_EVENTS, ASSESSMENTS, ALERTS, DEAD_LETTERS)

# The event topics are the system of record: kept forever (state and read models are rebuilt from
# them). Dead letters are kept 90 days: long enough to diagnose and replay.
_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    CLINICAL_EVENTS: _FOREVER,
    ASSESSMENTS: _FOREVER,
    ALERTS: _FOREVER,
    DEAD_LETTERS: {"retention.ms": str(90 * 24 * 3600 * 1000)},
}


@dataclass(frozen=True)
class DeadLetterHeaders:
    """Header names carried by a dead letter."""

    reason: str = "x-dead-letter-reason"
    source_topic: str = "x-source-topic"
    source_partition: str = "x-source-partition"
    source_offset: str = "x-source-offset"
    consumer_group: str = "x-consumer-group"


DEAD_LETTER_HEADERS = DeadLetterHeaders()
