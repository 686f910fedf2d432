"""Every Prometheus metric safetymon exports, in one place (labels are bounded sets)."""

from prometheus_client import Counter, Gauge, Histogram

INGESTED_EVENTS = Counter(
    "safetymon_ingest_events_total",
    "Events accepted by ingest and acknowledged by Kafka",
    ["event_type"],
)
INGEST_REJECTS = Counter(
    "safetymon_ingest_rejected_requests_total", "Requests refused by ingest", ["endpoint", "reason"]
)
CONSUMED_MESSAGES = Counter(
    "safetymon_consumed_messages_total",
    "Messages taken by a consumer, by outcome",
    ["service", "outcome"],
)
DEAD_LETTERS = Counter(
    "safetymon_dead_letters_total", "Messages parked on the dead-letter topic", ["service"]
)
LABS_GRADED = Counter("safetymon_labs_graded_total", "CTCAE grades assigned", ["term", "grade"])
DOSE_DECISIONS = Counter(
    "safetymon_dose_decisions_total", "Dose decisions made by protocol rules", ["rule_id", "action"]
)
ALERTS_RAISED = Counter(
    "safetymon_alerts_raised_total", "Alerts raised by the grader", ["severity", "rule_id"]
)
ALERTS_STORED = Counter(
    "safetymon_alerts_stored_total", "New alerts stored by the alert service", ["severity"]
)
NOTIFICATIONS = Counter(
    "safetymon_notifications_total", "Notification delivery attempts", ["channel", "outcome"]
)
GRADING_LATENCY = Histogram(
    "safetymon_grading_latency_seconds",
    "From ingest (recorded_at) to the grade being published",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ESCALATIONS = Counter("safetymon_alert_escalations_total", "Alerts escalated a tier", ["severity"])
OPEN_ALERTS = Gauge("safetymon_open_alerts", "Alerts not yet acknowledged", ["severity"])
OVERDUE_ALERTS = Gauge(
    "safetymon_overdue_alerts", "Open alerts past their reporting deadline", ["severity"]
)
