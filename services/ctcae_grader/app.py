"""Grader service: clinical events in, grades, dose decisions and alerts out."""

from fastapi import FastAPI

from services.common.consumer import RejectedEvent, subscribe
from services.common.http import add_operational_routes, configure_logging
from services.ctcae_grader.domain import assess
from shared.events import (
    AlertRaised,
    DoseDecisionMade,
    Envelope,
    LabGraded,
    LabResultReported,
    utc_now,
)
from shared.kafka import broker_running, make_broker, publish_events
from shared.metrics import ALERTS_RAISED, DOSE_DECISIONS, GRADING_LATENCY, LABS_GRADED
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

CLINICAL_EVENT_TYPES = {
    "SubjectEnrolled",
    "LabResultReported",
    "AdverseEventReported",
    "DoseAdministered",
    "EventCorrected",
    "EventRetracted",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    broker = make_broker(settings, client_id="safetymon-grader")

    async def on_clinical_event(event: Envelope) -> None:
        if event.event_type not in CLINICAL_EVENT_TYPES:
            raise RejectedEvent(f"{event.event_type} does not belong on the clinical-events topic")
        outcome = assess(event)
        await publish_events(broker, settings.topic(ASSESSMENTS), outcome.assessments)
        await publish_events(broker, settings.topic(ALERTS), outcome.alerts)
        record_metrics(event, outcome.assessments, outcome.alerts)

    subscribe(broker, settings, "grader", settings.topic(CLINICAL_EVENTS), on_clinical_event)

    app = FastAPI(
        title="safetymon CTCAE grader",
        version="1",
        lifespan=lambda _: broker_running(settings, broker),
    )

    async def broker_ok() -> dict[str, bool]:
        return {"kafka": await broker.ping(timeout=2.0)}

    add_operational_routes(app, "grader", broker_ok)
    return app


def record_metrics(event: Envelope, derived: list[Envelope], alerts: list[AlertRaised]) -> None:
    for item in derived:
        if isinstance(item, LabGraded):
            grade = item.payload.grade
            LABS_GRADED.labels(
                item.payload.term, "undecided" if grade is None else str(grade)
            ).inc()
        elif isinstance(item, DoseDecisionMade):
            for action in item.payload.actions:
                DOSE_DECISIONS.labels(item.payload.rule_id, action.action.value).inc()
    for alert in alerts:
        ALERTS_RAISED.labels(alert.payload.severity.value, alert.payload.rule_id).inc()
    if isinstance(event, LabResultReported):
        GRADING_LATENCY.observe((utc_now() - event.recorded_at).total_seconds())
