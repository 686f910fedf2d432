"""Every Prometheus metric safetymon exports, in one place.

Names carry their unit (`_seconds`, `_messages`) and counters end in `_total`. Every label has a
bounded set of values: event types, input formats, the study's sites, CTCAE terms and grades,
drugs of the regimen, rule ids of the protocol, severities, channels, outcomes, partitions.
Subject ids, alert ids and free text never become labels. The dashboards (deploy/grafana) and
alert rules (deploy/prometheus) query these names; a test checks each query returns data.
"""

from prometheus_client import Counter, Gauge, Histogram

# --- ingest ---------------------------------------------------------------------------------
INGESTED_EVENTS = Counter(
    "safetymon_ingest_events_total",
    "Events accepted by ingest and acknowledged by Kafka",
    ["event_type", "source", "site"],  # source: the input format (json, hl7v2, fhir, sdtm)
)
INGEST_REJECTS = Counter(
    "safetymon_ingest_rejected_requests_total",
    "Requests (or SDTM rows, HL7 messages, FHIR units) refused by ingest",
    ["endpoint", "reason"],
)

# --- every consumer -------------------------------------------------------------------------
CONSUMED_MESSAGES = Counter(
    "safetymon_consumed_messages_total",
    "Messages taken by a consumer, by outcome",
    ["service", "outcome"],
)
DEAD_LETTERS = Counter(
    "safetymon_dead_letters_total",
    "Messages parked on the dead-letter topic",
    ["service", "reason"],  # undecodable, rejected (cannot apply), failed (after retries)
)
CONSUMER_LAG = Gauge(
    "safetymon_consumer_lag_messages",
    "Messages on a partition not yet consumed by the service's group (end offset - position)",
    ["service", "topic", "partition"],
)

# --- grader ---------------------------------------------------------------------------------
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CLINICAL_BUCKETS_S = (60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400)
INGEST_TO_GRADED = Histogram(
    "safetymon_ingest_to_graded_seconds",
    "From ingest accepting a lab result (recorded_at) to its grades being published",
    buckets=LATENCY_BUCKETS_S,
)
CLINICAL_TO_GRADED = Histogram(
    "safetymon_clinical_event_to_graded_seconds",
    "From the clinical event (sample collection) to its grades being published",
    buckets=CLINICAL_BUCKETS_S,
)
LABS_GRADED = Counter("safetymon_labs_graded_total", "CTCAE grades assigned", ["term", "grade"])
DOSE_DECISIONS = Counter(
    "safetymon_dose_decisions_total",
    "Dose decisions made by protocol rules, per drug",
    ["drug", "action"],
)
ALERTS_RAISED = Counter(
    "safetymon_alerts_raised_total", "Alerts raised by the grader", ["severity", "rule_id"]
)
STATE_REBUILDS = Histogram(
    "safetymon_grader_state_rebuild_seconds",
    "Rebuilds of a partition's subject state from the log (at start-up, on taking a partition "
    "over, after a gap); each must end within the consumers' poll interval "
    "(CONSUMER_MAX_POLL_INTERVAL_S, 300 s by default)",
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 180, 240, 300, 600),
)

# --- alerts ---------------------------------------------------------------------------------
ALERTS_STORED = Counter(
    "safetymon_alerts_stored_total", "New alerts stored by the alert service", ["severity"]
)
NOTIFICATIONS = Counter(
    "safetymon_notifications_total", "Notification delivery attempts", ["channel", "outcome"]
)
ESCALATIONS = Counter("safetymon_alert_escalations_total", "Alerts escalated a tier", ["severity"])
OPEN_ALERTS = Gauge("safetymon_alerts_open", "Alerts neither resolved nor retracted", ["severity"])
UNACKNOWLEDGED_ALERTS = Gauge(
    "safetymon_alerts_unacknowledged", "Open alerts nobody has acknowledged yet", ["severity"]
)
OVERDUE_ALERTS = Gauge(
    "safetymon_alerts_overdue",
    "Open alerts past their reporting deadline (SAE and death: 24 h from site awareness)",
    ["severity"],
)
TIME_TO_ACKNOWLEDGE = Histogram(
    "safetymon_alert_time_to_acknowledge_seconds",
    "From an alert being raised to its first acknowledgement",
    ["severity"],
    buckets=(60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400),
)

# --- dsmb -----------------------------------------------------------------------------------
PROJECTED_EVENTS = Counter(
    "safetymon_dsmb_projected_events_total",
    "Events projected into the DSMB read models",
    ["event_type"],
)
