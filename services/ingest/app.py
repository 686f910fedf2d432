"""Ingest HTTP service: authenticate the sender, validate, normalise, publish to Kafka.

Answers 202 only once the broker has acknowledged the event; 503 with Retry-After, promptly,
while Kafka is unreachable or slow (the service starts, and recovers, without it)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from services.common.heap import settle_heap
from services.common.http import add_operational_routes
from services.common.logs import configure_logging
from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
)
from services.ingest.interop.common import Directory, study_directory
from services.ingest.interop.mllp import serve_mllp
from services.ingest.interop.routes import MLLP_PEER, add_interop_routes, handle_hl7
from services.ingest.publisher import (
    FORBIDDEN,
    RETRY_AFTER_S,
    BrokerLink,
    EventLogUnavailable,
    Publisher,
    keep_connected,
)
from services.ingest.refusals import REFUSAL_RESPONSE, refusal
from services.ingest.senders import Sender, SenderDirectory, sender_dependency
from shared.kafka import make_broker
from shared.metrics import INGEST_REJECTS
from shared.protocol import study_protocol
from shared.settings import Settings, get_settings
from shared.topics import CLINICAL_EVENTS

MAX_BATCH = 1000
# How long start-up waits for the first attempt to reach Kafka (a refused connection fails at
# once; an address that drops packets takes the admin client's 10 s timeout).
FIRST_CONNECT_WAIT_S = 15.0


class Accepted(BaseModel):
    accepted: int
    event_ids: list[str]


class _Refused(Exception):
    def __init__(self, problems: list[tuple], status: int = 422) -> None:
        self.problems, self.status = problems, status


def _refusal(problems: list[tuple], status: int = 422) -> JSONResponse:
    return refusal(
        [(".".join(str(part) for part in loc), msg, kind) for loc, msg, kind in problems], status
    )


def load_senders(settings: Settings, directory: Directory) -> SenderDirectory:
    """The senders file, required (SenderFileError: no start), naming only the study's sites."""
    if not settings.ingest_senders_file:
        raise RuntimeError(
            "INGEST_SENDERS_FILE is not set: ingest needs the sending systems, their token "
            "hashes and sites (format: deploy/senders.example.yaml)"
        )
    senders = SenderDirectory.load(settings.ingest_senders_file)
    unknown = sorted(senders.sites - set(directory.sites) - {"*"})
    if unknown:
        raise RuntimeError(
            f"{settings.ingest_senders_file}: site(s) {', '.join(unknown)} are not sites of "
            f"{settings.study_id} (the interop file's: {', '.join(sorted(directory.sites))})"
        )
    return senders


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, "ingest", settings.log_format)
    regimen = set(study_protocol(settings.study_id, settings.protocol_file).regimen.drugs)
    directory = study_directory(
        settings.study_id, settings.interop_file, settings.enrolment_map_file
    )
    current_sender = sender_dependency(load_senders(settings, directory))
    broker = make_broker(settings, client_id="safetymon-ingest")
    link = BrokerLink(up=False, reason="not connected to Kafka yet")
    publisher = Publisher(
        broker,
        settings.topic(CLINICAL_EVENTS),
        settings.study_id,
        regimen,
        set(directory.sites),
        link,
        settings.ingest_publish_timeout_s,
    )

    async def mllp_handler(message: bytes) -> bytes:
        return (await handle_hl7(publisher, directory, message, MLLP_PEER))[1]

    app = FastAPI(
        title="safetymon ingest",
        version="1",
        description="Clinical facts in: enrolment, lab results, adverse events, doses. Every "
        "submission needs its sending system's token (Authorization: Bearer ...).",
        lifespan=lambda _: running(settings, broker, link, mllp_handler),
        responses=REFUSAL_RESPONSE,
    )

    async def broker_ok() -> dict[str, bool]:
        return {"kafka": link.up and await broker.ping(timeout=2.0)}

    add_operational_routes(app, "ingest", broker_ok)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        INGEST_REJECTS.labels(request.url.path, "invalid").inc()
        return _refusal([(e["loc"][1:], e["msg"], e["type"]) for e in error.errors()])

    @app.exception_handler(_Refused)
    async def refused_after_normalising(_: Request, error: _Refused) -> JSONResponse:
        return _refusal(error.problems, error.status)

    async def publish(requests: Sequence[SubmissionIn], endpoint: str, sender: Sender) -> Accepted:
        events, problems = [], []
        for index, request in enumerate(requests):
            where = (index,) if endpoint.endswith("/batch") else ()
            event, refusals = publisher.events_of(request, sender)
            problems += [((*where, *r.location), r.reason, r.kind) for r in refusals]
            if event is not None:
                events.append(event)
        forbidden = [problem for problem in problems if problem[2] == FORBIDDEN]
        if forbidden:  # 403, naming only the sites: nothing of the batch is published
            INGEST_REJECTS.labels(endpoint, "forbidden").inc()
            raise _Refused(forbidden, 403)
        if problems:
            INGEST_REJECTS.labels(endpoint, "invalid").inc()
            raise _Refused(problems)
        try:
            await publisher.publish(events, endpoint, sender)
        except EventLogUnavailable as error:
            # Not acknowledged: tell the client to retry; a resend keeps the same event ids.
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            raise HTTPException(503, str(error), headers=retry) from error
        return Accepted(accepted=len(events), event_ids=[str(e.event_id) for e in events])

    SenderIn = Annotated[Sender, Depends(current_sender)]

    def routes(path: str, model: type[SubmissionIn], summary: str) -> None:
        @app.post(path, status_code=202, response_model=Accepted, summary=summary)
        async def submit_one(
            item: Annotated[model, Body()],  # type: ignore[valid-type]
            sender: SenderIn,
        ) -> Accepted:
            return await publish([item], path, sender)

        @app.post(
            f"{path}/batch",
            status_code=202,
            response_model=Accepted,
            summary=f"{summary} (batch: all valid or none published)",
        )
        async def submit_batch(
            items: Annotated[list[model], Body(max_length=MAX_BATCH)],  # type: ignore[valid-type]
            sender: SenderIn,
        ) -> Accepted:
            return await publish(items, f"{path}/batch", sender)

    routes("/v1/enrolments", EnrolmentIn, "Enrol a subject with baseline")
    routes("/v1/labs", LabResultIn, "Report a lab result")
    routes("/v1/adverse-events", AdverseEventIn, "Report an adverse event")
    routes("/v1/doses", DoseIn, "Report a dose administration")
    routes("/v1/lab-corrections", LabCorrectionIn, "Correct an earlier lab result")
    routes("/v1/retractions", RetractionIn, "Withdraw an earlier event")
    add_interop_routes(app, publisher, directory, current_sender)
    return app


@asynccontextmanager
async def running(
    settings: Settings,
    broker: KafkaBroker,
    link: BrokerLink,
    mllp_handler: Callable[[bytes], Awaitable[bytes]],
) -> AsyncIterator[None]:
    """The HL7 v2 MLLP listener beside the HTTP one, and the broker connected in the background:
    ingest serves without Kafka (/health 503, submissions 503 with Retry-After) and connects
    when Kafka answers. Start-up waits for the first attempt only, so on a healthy broker the
    service is ready when it starts answering."""
    server = await serve_mllp(mllp_handler, settings.bind_host, settings.mllp_port)
    tried = asyncio.Event()
    connecting = asyncio.create_task(keep_connected(settings, broker, link, tried))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tried.wait(), FIRST_CONNECT_WAIT_S)
        settle_heap()
        yield
    finally:
        server.close()
        await server.wait_closed()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        await broker.stop()  # in-flight publishes drain before the connection closes
