"""Ingest HTTP service: validate, normalise, publish to Kafka.

Answers 202 only once the broker has acknowledged the event."""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

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
from services.ingest.interop.common import study_directory
from services.ingest.interop.mllp import serve_mllp
from services.ingest.interop.routes import add_interop_routes, handle_hl7
from services.ingest.publisher import EventLogUnavailable, Publisher
from shared.kafka import broker_running, make_broker
from shared.metrics import INGEST_REJECTS
from shared.protocol import study_protocol
from shared.settings import Settings, get_settings
from shared.topics import CLINICAL_EVENTS

MAX_BATCH = 1000


class Accepted(BaseModel):
    accepted: int
    event_ids: list[str]


class _Refused(Exception):
    def __init__(self, problems: list[tuple]) -> None:
        self.problems = problems


def _refusal(problems: list[tuple]) -> JSONResponse:
    details = [
        {"field": ".".join(str(part) for part in loc), "reason": msg, "type": kind}
        for loc, msg, kind in problems
    ]
    return JSONResponse({"detail": details}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, "ingest", settings.log_format)
    broker = make_broker(settings, client_id="safetymon-ingest")
    regimen = set(study_protocol(settings.study_id, settings.protocol_file).regimen.drugs)
    directory = study_directory(
        settings.study_id, settings.interop_file, settings.enrolment_map_file
    )
    topic = settings.topic(CLINICAL_EVENTS)
    publisher = Publisher(broker, topic, settings.study_id, regimen, set(directory.sites))

    async def mllp_handler(message: bytes) -> bytes:
        return (await handle_hl7(publisher, directory, message))[1]

    app = FastAPI(
        title="safetymon ingest",
        version="1",
        description="Clinical facts in: enrolment, lab results, adverse events, doses.",
        lifespan=lambda _: running(settings, broker, mllp_handler),
    )

    async def broker_ok() -> dict[str, bool]:
        return {"kafka": await broker.ping(timeout=2.0)}

    add_operational_routes(app, "ingest", broker_ok)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        INGEST_REJECTS.labels(request.url.path, "invalid").inc()
        return _refusal([(e["loc"][1:], e["msg"], e["type"]) for e in error.errors()])

    @app.exception_handler(_Refused)
    async def refused_after_normalising(_: Request, error: _Refused) -> JSONResponse:
        return _refusal(error.problems)

    async def publish(requests: Sequence[SubmissionIn], endpoint: str) -> Accepted:
        events, problems = [], []
        for index, request in enumerate(requests):
            where = (index,) if endpoint.endswith("/batch") else ()
            event, refusals = publisher.events_of(request)
            problems += [((*where, *r.location), r.reason, r.kind) for r in refusals]
            if event is not None:
                events.append(event)
        if problems:
            INGEST_REJECTS.labels(endpoint, "invalid").inc()
            raise _Refused(problems)
        try:
            await publisher.publish(events, endpoint)
        except EventLogUnavailable as error:
            # Not acknowledged: tell the client to retry; a resend keeps the same event ids.
            raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from error
        return Accepted(accepted=len(events), event_ids=[str(e.event_id) for e in events])

    def routes(path: str, model: type[SubmissionIn], summary: str) -> None:
        @app.post(path, status_code=202, response_model=Accepted, summary=summary)
        async def submit_one(item: Annotated[model, Body()]) -> Accepted:  # type: ignore[valid-type]
            return await publish([item], path)

        @app.post(
            f"{path}/batch",
            status_code=202,
            response_model=Accepted,
            summary=f"{summary} (batch: all valid or none published)",
        )
        async def submit_batch(
            items: Annotated[list[model], Body(max_length=MAX_BATCH)],  # type: ignore[valid-type]
        ) -> Accepted:
            return await publish(items, f"{path}/batch")

    routes("/v1/enrolments", EnrolmentIn, "Enrol a subject with baseline")
    routes("/v1/labs", LabResultIn, "Report a lab result")
    routes("/v1/adverse-events", AdverseEventIn, "Report an adverse event")
    routes("/v1/doses", DoseIn, "Report a dose administration")
    routes("/v1/lab-corrections", LabCorrectionIn, "Correct an earlier lab result")
    routes("/v1/retractions", RetractionIn, "Withdraw an earlier event")
    add_interop_routes(app, publisher, directory)
    return app


@asynccontextmanager
async def running(
    settings: Settings, broker: KafkaBroker, mllp_handler: Callable[[bytes], Awaitable[bytes]]
) -> AsyncIterator[None]:
    """The broker, and the HL7 v2 MLLP listener beside the HTTP one."""
    async with broker_running(settings, broker):
        server = await serve_mllp(mllp_handler, settings.bind_host, settings.mllp_port)
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()
