"""From accepted requests to events on the clinical-events topic: the one path every input
takes (the JSON API, HL7 v2, FHIR, SDTM), so every format ends in the same canonical events,
checked against the same sender's sites and published with the same deadline."""

import asyncio
import logging
from collections.abc import Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from uuid import UUID

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from services.common.logs import current_context
from services.ingest.domain import SubmissionIn, drugs_outside_regimen, to_event
from services.ingest.senders import Sender
from shared.events import Drug, Envelope
from shared.kafka import ensure_topics, publish_events
from shared.metrics import INGEST_REJECTS, INGESTED_EVENTS
from shared.settings import Settings

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 5.0  # the default of INGEST_PUBLISH_TIMEOUT_S
RETRY_AFTER_S = 5  # what a 503 tells the sender to wait before resending
FORBIDDEN = "forbidden_site"  # the kind of a Refusal for a site outside the sender's sites
CONNECT_PAUSE_S = (0.5, 5.0)  # first and longest pause between attempts to reach Kafka
WATCH_EVERY_S = 2.0  # how often a connected broker is checked
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


@dataclass
class BrokerLink:
    """Whether ingest can write to Kafka now, as `keep_connected` last found. Every publish
    reads it, so while Kafka is known to be unreachable a submission is answered 503 at once
    instead of holding the sender for the whole publish deadline. `reason` is shown to senders:
    no addresses in it (those go to the log)."""

    up: bool = True
    reason: str = ""

    def down(self, reason: str) -> None:
        if self.up:
            log.warning("event log unavailable: %s; answering 503 until it is back", reason)
        self.up, self.reason = False, reason

    def restored(self) -> None:
        if not self.up:
            log.info("event log available again: accepting submissions")
        self.up, self.reason = True, ""


@dataclass(frozen=True)
class Publisher:
    broker: KafkaBroker
    topic: str
    study_id: str
    regimen: Collection[Drug]
    sites: Collection[str] = ()  # the study's sites: any other site is counted as "other"
    link: BrokerLink = field(default_factory=BrokerLink)
    timeout_s: float = PUBLISH_TIMEOUT_S

    def events_of(
        self, request: SubmissionIn, sender: Sender
    ) -> tuple[Envelope | None, list[Refusal]]:
        """The canonical event of a request valid as sent, or why it is refused: for a site the
        sender may not submit for (refused alone: nothing else is said about another site's
        data), a drug the study does not give, or a value out of range once normalised."""
        # The site the event will carry: to_event copies it, and the interop adapters set it
        # from the enrolment map, so this is the canonical event's site whatever the format.
        if not sender.may_submit_for(request.site_id):
            return None, [Refusal(("site_id",), sender.refusal(request.site_id), FORBIDDEN)]
        request = _with_source(request, sender)
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

    async def publish(
        self, events: Sequence[Envelope], endpoint: str, sender: Sender | None = None
    ) -> None:
        """Return once Kafka has acknowledged every event, else raise EventLogUnavailable: at
        once while Kafka is known to be down, else after `timeout_s` at most. Logs one line
        per request, naming the `sender`'s system."""
        if not self.link.up:
            INGEST_REJECTS.labels(endpoint, "broker_unavailable").inc()
            raise EventLogUnavailable(
                f"event log unavailable ({self.link.reason}): retry the same request"
            )
        try:
            # The whole publish under the deadline: aiokafka's send waits for topic metadata
            # (up to its 40 s request timeout) before the acknowledgement is even awaited.
            async with asyncio.timeout(self.timeout_s):
                await publish_events(self.broker, self.topic, events, self.timeout_s)
        except Exception as error:
            INGEST_REJECTS.labels(endpoint, "broker_unavailable").inc()
            if isinstance(error, TimeoutError):
                # Our own deadline, not a defect: one line, no traceback. When the broker is
                # slow every request in flight times out, and a traceback each made an
                # overloaded ingest slower still.
                self.link.down(f"Kafka did not acknowledge within {self.timeout_s:g} s")
                log.warning(
                    "publish of %d events to %s: not acknowledged within %g s",
                    len(events),
                    self.topic,
                    self.timeout_s,
                )
            else:
                log.exception("publish to %s failed", self.topic)
            raise EventLogUnavailable("event log unavailable: retry the same request") from error
        source = source_format(endpoint)
        # The one line of an accepted request (the access log aside).
        who = f" from {sender.system}" if sender else ""
        log.info("published %d events of %s%s", len(events), endpoint, who)
        for event in events:
            site = event.site_id if event.site_id in self.sites else "other"
            INGESTED_EVENTS.labels(event.event_type, source, site).inc()


def _with_source(request: SubmissionIn, sender: Sender) -> SubmissionIn:
    """The request with the sender's system as its source when it names none ("api" is only
    the model's default). A source it names is kept: it is part of the event id, so resends
    stay the same events, and one sender (an EDC, an interface engine) may relay several."""
    if "source_system" in request.model_fields_set:
        return request
    return request.model_copy(update={"source_system": sender.system})


# ---------------------------------------------------------------------------------------------
# Staying connected
# ---------------------------------------------------------------------------------------------


async def keep_connected(
    settings: Settings, broker: KafkaBroker, link: BrokerLink, tried: asyncio.Event
) -> None:
    """Connect `broker` (creating missing topics first) as soon as Kafka answers, however long
    that takes, then watch it; `link` says meanwhile whether publishing can work. `tried` is set
    once the first attempt is over, whatever its outcome. Runs until cancelled."""
    await _connect(settings, broker, link, tried)
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        if await broker.ping(timeout=WATCH_EVERY_S):
            link.restored()
        else:
            link.down("Kafka does not answer")


async def _connect(
    settings: Settings, broker: KafkaBroker, link: BrokerLink, tried: asyncio.Event
) -> None:
    pause, longest = CONNECT_PAUSE_S
    while True:
        try:
            await ensure_topics(settings, timeout_s=0)  # one try: the pauses are ours
            await broker.start()
        except Exception as error:  # unreachable, refused login, ...: whatever it is, retry
            link.down("not connected to Kafka")
            log.warning(
                "cannot connect to Kafka at %s (%r): next try in %.1f s",
                settings.kafka_bootstrap_servers,
                error,
                pause,
            )
            with suppress(Exception):
                await broker.stop()  # a half-started producer holds connections
        else:
            link.restored()
            return
        finally:
            tried.set()
        await asyncio.sleep(pause)
        pause = min(pause * 2, longest)
