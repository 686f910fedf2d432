"""Grader service: clinical events in, grades, dose decisions and alerts out."""

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from services.common.consumer import RejectedEvent, subscribe
from services.common.http import add_operational_routes
from services.common.logs import configure_logging
from services.ctcae_grader.explain import explain
from services.ctcae_grader.ledger import RevisionRefused, SubjectLedger
from shared.events import (
    AlertRaised,
    DoseDecisionMade,
    Envelope,
    EventDecodeError,
    LabGraded,
    LabResultReported,
    decode_event,
    utc_now,
)
from shared.kafka import (
    broker_running,
    ensure_topics,
    make_broker,
    publish_events,
    replay_committed,
)
from shared.metrics import (
    ALERTS_RAISED,
    CLINICAL_TO_GRADED,
    DOSE_DECISIONS,
    INGEST_TO_GRADED,
    LABS_GRADED,
)
from shared.protocol import study_protocol
from shared.reference_ranges import load_reference_ranges
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

log = logging.getLogger(__name__)
GROUP = "grader"
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
    configure_logging(settings.log_level, "grader", settings.log_format)
    broker = make_broker(settings, client_id="safetymon-grader")
    ranges = load_reference_ranges(settings.reference_ranges_file)
    protocol = study_protocol(settings.study_id, settings.protocol_file)  # ProtocolError: no start
    ledgers: dict[str, SubjectLedger] = {}
    topic, group = settings.topic(CLINICAL_EVENTS), settings.consumer_group(GROUP)

    async def on_clinical_event(event: Envelope) -> None:
        if event.event_type not in CLINICAL_EVENT_TYPES:
            raise RejectedEvent(f"{event.event_type} does not belong on the clinical-events topic")
        draft = ledgers.get(event.subject_id, SubjectLedger()).clone()
        try:
            outputs = draft.record(protocol, event, ranges)
        except RevisionRefused as error:
            raise RejectedEvent(str(error)) from error
        await publish_events(broker, settings.topic(ASSESSMENTS), outputs.assessments)
        await publish_events(broker, settings.topic(ALERTS), outputs.alerts)
        ledgers[event.subject_id] = draft  # once the outputs are durable: a retry starts afresh
        record_metrics(event, outputs.assessments, outputs.alerts)

    def rebuild_state(raw: bytes) -> None:
        with contextlib.suppress(EventDecodeError):  # poison was dead-lettered the first time
            event = decode_event(raw)
            if event.event_type in CLINICAL_EVENT_TYPES:
                ledger = ledgers.setdefault(event.subject_id, SubjectLedger())
                with contextlib.suppress(RevisionRefused):  # dead-lettered the first time
                    ledger.record(protocol, event, ranges)

    subscribe(broker, settings, GROUP, topic, on_clinical_event)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        replayed = await replay_committed(settings, topic, group, rebuild_state)
        log.info("patient state rebuilt from %d events: %d subjects", replayed, len(ledgers))
        async with broker_running(settings, broker, lag_of={GROUP: [topic]}):
            yield

    app = FastAPI(title="safetymon CTCAE grader", version="1", lifespan=lifespan)

    async def broker_ok() -> dict[str, bool]:
        return {"kafka": await broker.ping(timeout=2.0)}

    add_operational_routes(app, "grader", broker_ok)

    @app.get("/v1/subjects/{subject_id}/explain")
    async def explain_subject(subject_id: str) -> dict:
        """The subject's state and why each decision in force stands."""
        ledger = ledgers.get(subject_id)
        if ledger is None or ledger.state is None:
            raise HTTPException(404, f"no events for subject {subject_id}")
        return explain(protocol, ledger.state)

    return app


def record_metrics(event: Envelope, derived: list[Envelope], alerts: list[Envelope]) -> None:
    for item in derived:
        if isinstance(item, LabGraded):
            grade = item.payload.grade
            LABS_GRADED.labels(
                item.payload.term, "undecided" if grade is None else str(grade)
            ).inc()
        elif isinstance(item, DoseDecisionMade):
            for action in item.payload.actions:
                DOSE_DECISIONS.labels(str(action.drug), action.action.value).inc()
    for alert in alerts:
        if isinstance(alert, AlertRaised):  # (a correction may also retract alerts)
            ALERTS_RAISED.labels(alert.payload.severity.value, alert.payload.rule_id).inc()
    if isinstance(event, LabResultReported):
        now = utc_now()
        INGEST_TO_GRADED.observe((now - event.recorded_at).total_seconds())
        CLINICAL_TO_GRADED.observe(max(0.0, (now - event.occurred_at).total_seconds()))
