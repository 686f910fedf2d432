"""From accepted requests to events on the clinical-events topic: the one path every input
takes (the JSON API, HL7 v2, FHIR, SDTM), so every format ends in the same canonical events."""

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from uuid import UUID

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from services.common.logs import current_context
from services.ingest.domain import SubmissionIn, drugs_outside_regimen, to_event
from shared.events import Drug, Envelope
from shared.kafka import publish_events
from shared.metrics import INGEST_REJECTS, INGESTED_EVENTS

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 30.0
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Refusal:
    """Why a request cannot become an event: the field (path inside the request), the reason,
    and a short machine-readable kind."""

    location: Location
    reason: str
    kind: str


class EventLogUnavailable(Exception):
    """Kafka did not acknowledge: nothing can be promised; the sender must resend (same ids)."""


def source_format(endpoint: str) -> str:
    """The input format an endpoint takes (a bounded label for the ingest metrics)."""
    for prefix, name in (("/v1/hl7", "hl7v2"), ("/v1/fhir", "fhir"), ("/v1/sdtm", "sdtm")):
        if endpoint.startswith(prefix):
            return name
    return "json"


@dataclass(frozen=True)
class Publisher:
    broker: KafkaBroker
    topic: str
    study_id: str
    regimen: Collection[Drug]
    sites: Collection[str] = ()  # the study's sites: any other site is counted as "other"

    def events_of(self, request: SubmissionIn) -> tuple[Envelope | None, list[Refusal]]:
        """The canonical event of a request valid as sent, or why it is refused once checked
        against the study (a drug it does not give) or normalised (e.g. out of range in SI)."""
        refusals = [
            Refusal(field, reason, "unknown_drug")
            for field, reason in drugs_outside_regimen(request, self.regimen)
        ]
        try:
            event = to_event(request, self.study_id)
        except ValidationError as error:
            refusals += [Refusal(e["loc"], e["msg"], e["type"]) for e in error.errors()]
            return None, refusals
        if correlation_id := current_context().get("correlation_id"):
            event = event.model_copy(update={"correlation_id": UUID(correlation_id)})
        return (None if refusals else event), refusals

    async def publish(self, events: Sequence[Envelope], endpoint: str) -> None:
        """Return once Kafka has acknowledged every event, else raise EventLogUnavailable."""
        try:
            await publish_events(self.broker, self.topic, events, PUBLISH_TIMEOUT_S)
        except Exception as error:
            INGEST_REJECTS.labels(endpoint, "broker_unavailable").inc()
            log.exception("publish to %s failed", self.topic)
            raise EventLogUnavailable("event log unavailable: retry the same request") from error
        source = source_format(endpoint)
        log.info("published %d events from %s", len(events), endpoint)
        for event in events:
            site = event.site_id if event.site_id in self.sites else "other"
            INGESTED_EVENTS.labels(event.event_type, source, site).inc()
