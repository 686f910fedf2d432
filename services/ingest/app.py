"""Ingest HTTP service: validate, normalise, publish to Kafka.

Answers 202 only once the broker has acknowledged the event."""

import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from services.common.http import add_operational_routes, configure_logging
from services.ingest.domain import (
    AdverseEventIn,
    DoseIn,
    EnrolmentIn,
    LabCorrectionIn,
    LabResultIn,
    RetractionIn,
    SubmissionIn,
    drugs_outside_regimen,
    to_event,
)
from shared.kafka import broker_running, make_broker, publish_events
from shared.metrics import INGEST_REJECTS, INGESTED_EVENTS
from shared.protocol import study_protocol
from shared.settings import Settings, get_settings
from shared.topics import CLINICAL_EVENTS

log = logging.getLogger(__name__)
MAX_BATCH = 1000
PUBLISH_TIMEOUT_S = 30.0


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
    configure_logging(settings.log_level)
    broker = make_broker(settings, client_id="safetymon-ingest")
    topic = settings.topic(CLINICAL_EVENTS)
    regimen = set(study_protocol(settings.study_id, settings.protocol_file).regimen.drugs)

    app = FastAPI(
        title="safetymon ingest",
        version="1",
        description="Clinical facts in: enrolment, lab results, adverse events, doses.",
        lifespan=lambda _: broker_running(settings, broker),
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
            problems += [
                ((*where, *field), reason, "unknown_drug")
                for field, reason in drugs_outside_regimen(request, regimen)
            ]
            try:
                events.append(to_event(request, settings.study_id))
            except ValidationError as error:
                # Valid as sent, invalid once normalised (e.g. out of range in SI units).
                problems += [((*where, *e["loc"]), e["msg"], e["type"]) for e in error.errors()]
        if problems:
            INGEST_REJECTS.labels(endpoint, "invalid").inc()
            raise _Refused(problems)
        try:
            await publish_events(broker, topic, events, PUBLISH_TIMEOUT_S)
        except Exception as error:
            # Not acknowledged: tell the client to retry; a resend keeps the same event ids.
            INGEST_REJECTS.labels(endpoint, "broker_unavailable").inc()
            log.exception("publish to %s failed", topic)
            raise HTTPException(503, "event log unavailable: retry the same request") from error
        for event in events:
            INGESTED_EVENTS.labels(event.event_type).inc()
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
    return app
