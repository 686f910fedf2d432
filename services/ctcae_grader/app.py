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
    dead_lettered_offsets,
    ensure_topics,
    make_broker,
    publish_events,
    read_partition,
    read_subject_events,
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
    ledger_partition: dict[str, int] = {}  # subject -> the partition its events sit in
    topic, group = settings.topic(CLINICAL_EVENTS), settings.consumer_group(GROUP)

    # The offset after the last message applied to `ledgers`, per partition. A subject's events
    # all sit in one partition (keyed by subject id), so a partition's ledgers are current when
    # the next message is the one after the last applied. Any gap (start-up, a partition handed
    # over by a rebalance and back, a poison message skipped) rebuilds that partition's ledgers
    # from the log below the message first, so two graders sharing the topic never act on
    # stale state.
    applied: dict[int, int] = {}

    async def current_state(partition: int, offset: int) -> None:
        if applied.get(partition) == offset:
            return
        replayed: dict[str, SubjectLedger] = {}
        parked = await dead_lettered_offsets(settings, group, topic, partition)
        async for records in read_partition(settings, topic, partition, offset):
            for record in records:
                if record.offset not in parked:
                    replay(replayed, record.value)
        stale = [s for s, p in ledger_partition.items() if p == partition]
        for subject in stale:
            ledgers.pop(subject, None)
        ledgers.update(replayed)
        ledger_partition.update(dict.fromkeys(replayed, partition))
        applied[partition] = offset
        log.info(
            "partition %d state rebuilt below offset %d: %d subjects",
            partition,
            offset,
            len(replayed),
        )

    def replay(into: dict[str, SubjectLedger], raw: bytes) -> None:
        with contextlib.suppress(EventDecodeError):  # poison was dead-lettered the first time
            event = decode_event(raw)
            if event.event_type in CLINICAL_EVENT_TYPES:
                ledger = into.setdefault(event.subject_id, SubjectLedger())
                with contextlib.suppress(RevisionRefused):  # dead-lettered the first time
                    ledger.record(protocol, event, ranges)

    async def on_clinical_event(event: Envelope, partition: int, offset: int) -> None:
        await current_state(partition, offset)
        if event.event_type not in CLINICAL_EVENT_TYPES:
            applied[partition] = offset + 1  # dead-lettered: changes no state
            raise RejectedEvent(f"{event.event_type} does not belong on the clinical-events topic")
        draft = ledgers.get(event.subject_id, SubjectLedger()).clone()
        try:
            outputs = draft.record(protocol, event, ranges)
        except RevisionRefused as error:
            applied[partition] = offset + 1
            raise RejectedEvent(str(error)) from error
        await publish_events(broker, settings.topic(ASSESSMENTS), outputs.assessments)
        await publish_events(broker, settings.topic(ALERTS), outputs.alerts)
        ledgers[event.subject_id] = draft  # once the outputs are durable: a retry starts afresh
        ledger_partition[event.subject_id] = partition
        applied[partition] = offset + 1
        record_metrics(event, outputs.assessments, outputs.alerts)

    subscribe(broker, settings, GROUP, topic, positioned=on_clinical_event)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
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
        if ledger is None:  # not consumed here since start-up: read it from the log
            replayed: dict[str, SubjectLedger] = {}
            for raw in await read_subject_events(settings, topic, subject_id):
                replay(replayed, raw)
            ledger = replayed.get(subject_id)
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
