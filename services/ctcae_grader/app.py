"""Grader service: clinical events in, grades, dose decisions and alerts out."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, HTTPException

from services.common.consumer import RejectedEvent, subscribe_batch
from services.common.heap import settle_heap
from services.common.http import add_operational_routes
from services.common.logs import configure_logging, event_context
from services.ctcae_grader.explain import explain
from services.ctcae_grader.ledger import (
    CLINICAL_EVENT_TYPES,
    Outputs,
    RevisionRefused,
    SubjectLedger,
    replay_into,
)
from shared.events import (
    AlertRaised,
    DoseDecisionMade,
    Envelope,
    LabGraded,
    LabResultReported,
    utc_now,
)
from shared.kafka import (
    broker_running,
    dead_lettered_offsets,
    ensure_topics,
    make_broker,
    make_producer,
    read_partition,
    read_subject_events,
    send_events,
)
from shared.metrics import (
    ALERTS_RAISED,
    CLINICAL_TO_GRADED,
    DOSE_DECISIONS,
    INGEST_TO_GRADED,
    LABS_GRADED,
    STATE_REBUILDS,
)
from shared.protocol import Protocol, study_protocol
from shared.reference_ranges import ReferenceRangeTable, load_reference_ranges
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

log = logging.getLogger(__name__)
GROUP = "grader"
# Of the consumer's poll interval: a rebuild taking longer is logged as a warning (the alert rule
# SafetymonGraderStateRebuildSlow warns at 2 minutes, 0.4 of the default 5).
REBUILD_WARNING_FRACTION = 0.4


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, "grader", settings.log_format)
    broker = make_broker(settings, client_id="safetymon-grader")
    ranges = load_reference_ranges(settings.reference_ranges_file)
    protocol = study_protocol(settings.study_id, settings.protocol_file)  # ProtocolError: no start
    grader = Grader(settings, protocol, ranges)
    subscribe_batch(broker, settings, GROUP, grader.topic, grader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings)
        await grader.start()
        try:
            async with broker_running(settings, broker, lag_of={GROUP: [grader.topic]}):
                settle_heap()
                yield
        finally:
            await grader.stop()

    app = FastAPI(title="safetymon CTCAE grader", version="1", lifespan=lifespan)

    async def broker_ok() -> dict[str, bool]:
        return {"kafka": await broker.ping(timeout=2.0)}

    add_operational_routes(app, "grader", broker_ok)

    @app.get("/v1/subjects/{subject_id}/explain")
    async def explain_subject(subject_id: str) -> dict:
        """The subject's state and why each decision in force stands."""
        ledger = grader.ledgers.get(subject_id)
        if ledger is None:  # not consumed here since start-up: read it from the log
            replayed: dict[str, SubjectLedger] = {}
            for raw in await read_subject_events(settings, grader.topic, subject_id):
                grader.replay(replayed, raw)
            ledger = replayed.get(subject_id)
        if ledger is None or ledger.state is None:
            raise HTTPException(404, f"no events for subject {subject_id}")
        return explain(protocol, ledger.state)

    return app


class Grader:
    """The grader's consumer of clinical events: per subject, a ledger of its events and what
    they imply; a batch's outputs are published together and only then does the batch's state
    become current (a batch delivered again starts from the state before it).

    The offset after the last message applied, per partition: a subject's events all sit in one
    partition (keyed by subject id), so a partition's ledgers are current when the next message
    is the one after the last applied. Any gap (start-up, a partition handed over by a rebalance
    and back, a poison message skipped) rebuilds that partition's ledgers from the log below the
    message first, so two graders sharing the topic never act on stale state."""

    def __init__(
        self,
        settings: Settings,
        protocol: Protocol,
        ranges: ReferenceRangeTable | None,
    ) -> None:
        self.settings, self.protocol, self.ranges = settings, protocol, ranges
        self.producer: AIOKafkaProducer | None = None  # made in start(): it needs the loop
        self.topic = settings.topic(CLINICAL_EVENTS)
        self.group = settings.consumer_group(GROUP)
        self.ledgers: dict[str, SubjectLedger] = {}
        self.partition_of: dict[str, int] = {}  # subject -> the partition its events sit in
        self.applied: dict[int, int] = {}
        self.discard()

    async def start(self) -> None:
        self.producer = make_producer(self.settings, client_id="safetymon-grader")
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def discard(self) -> None:
        self.drafts: dict[str, SubjectLedger] = {}
        self.staged_applied: dict[int, int] = {}
        self.staged = Outputs()
        self.staged_events: list[Envelope] = []

    async def stage(self, event: Envelope, partition: int, offset: int, raw: bytes) -> None:
        await self._current_state(partition, offset)
        self.staged_applied[partition] = offset + 1  # also when refused: it changes no state
        if event.event_type not in CLINICAL_EVENT_TYPES:
            raise RejectedEvent(f"{event.event_type} does not belong on the clinical-events topic")
        subject = event.subject_id
        draft = self.drafts.get(subject)
        if draft is None:
            draft = self.drafts[subject] = self.ledgers.get(subject, SubjectLedger()).clone()
            self.partition_of[subject] = partition
        try:
            outputs = draft.record(self.protocol, event, self.ranges, raw)
        except RevisionRefused as error:
            raise RejectedEvent(str(error)) from error
        self.staged.assessments += outputs.assessments
        self.staged.alerts += outputs.alerts
        self.staged_events.append(event)
        decisions = sum(isinstance(o, DoseDecisionMade) for o in outputs.assessments)
        if decisions or outputs.alerts:  # worth a line each; every event at DEBUG
            with event_context(event):
                log.info(
                    "%s %s: %d dose decisions, %d alerts or retractions",
                    subject,
                    event.event_type,
                    decisions,
                    len(outputs.alerts),
                )
        elif log.isEnabledFor(logging.DEBUG):
            with event_context(event):
                log.debug("%s %s: %d outputs", subject, event.event_type, len(outputs.assessments))

    async def flush(self) -> None:
        assert self.producer is not None, "flush before start"
        await asyncio.gather(
            send_events(self.producer, self.settings.topic(ASSESSMENTS), self.staged.assessments),
            send_events(self.producer, self.settings.topic(ALERTS), self.staged.alerts),
        )
        self.ledgers.update(self.drafts)
        self.applied.update(self.staged_applied)
        record_metrics(self.staged_events, self.staged.assessments, self.staged.alerts)
        self.discard()

    async def _current_state(self, partition: int, offset: int) -> None:
        if self.staged_applied.get(partition, self.applied.get(partition)) == offset:
            return
        started = time.perf_counter()
        replayed: dict[str, SubjectLedger] = {}
        parked = await dead_lettered_offsets(self.settings, self.group, self.topic, partition)
        async for records in read_partition(self.settings, self.topic, partition, offset):
            for record in records:
                if record.offset not in parked:
                    self.replay(replayed, record.value)
        stale = [s for s, p in self.partition_of.items() if p == partition]
        for subject in stale:
            self.ledgers.pop(subject, None)
            self.drafts.pop(subject, None)  # staged outputs stay: they follow from the log too
        self.ledgers.update(replayed)
        self.partition_of.update(dict.fromkeys(replayed, partition))
        self.applied[partition] = self.staged_applied[partition] = offset
        self._rebuilt(partition, offset, len(replayed), time.perf_counter() - started)

    def _rebuilt(self, partition: int, offset: int, subjects: int, took: float) -> None:
        STATE_REBUILDS.observe(took)
        # Past the poll interval the grader is evicted from its group mid-rebuild, and whoever
        # takes the partition over starts the same rebuild again: warn well before.
        interval = self.settings.consumer_max_poll_interval_s
        slow = took > REBUILD_WARNING_FRACTION * interval
        log.log(
            logging.WARNING if slow else logging.INFO,
            "partition %d state rebuilt below offset %d in %.1f s: %d subjects%s",
            partition,
            offset,
            took,
            subjects,
            f"; near the consumer's poll interval ({interval} s): see the runbook's "
            "SafetymonGraderStateRebuildSlow"
            if slow
            else "",
        )

    def replay(self, into: dict[str, SubjectLedger], raw: bytes) -> None:
        replay_into(into, raw, self.protocol, self.ranges)


def record_metrics(events: list[Envelope], derived: list[Envelope], alerts: list[Envelope]) -> None:
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
    now = utc_now()
    for event in events:
        if isinstance(event, LabResultReported):
            INGEST_TO_GRADED.observe((now - event.recorded_at).total_seconds())
            CLINICAL_TO_GRADED.observe(max(0.0, (now - event.occurred_at).total_seconds()))
