"""Ingest's interoperability endpoints: HL7 v2 (HTTP; MLLP shares the handler), FHIR R4 and
CDISC SDTM. Each converts with its adapter and publishes through the shared Publisher."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.ingest.interop import fhir, hl7v2, sdtm
from services.ingest.interop.common import Directory, InteropError, Problem
from services.ingest.interop.publishing import Outcome, accept_and_publish
from services.ingest.publisher import RETRY_AFTER_S, EventLogUnavailable, Publisher
from services.ingest.refusals import Refusal, refusal
from services.ingest.senders import EVERY_SITE, Sender
from shared.metrics import INGEST_REJECTS

HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
FHIR_MEDIA_TYPE = "application/fhir+json"
MAX_SDTM_ROWS_PER_REQUEST = 5000
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}
# HL7 v2 over MLLP has no header for a token: the connection is authenticated by the network
# (mutual TLS in front of the port, a VPN, a NetworkPolicy admitting only the sites' lab
# systems), and a message is only taken for the site its sending facility (MSH-4) names in the
# interop file (hl7v2._Reader refuses a patient of another site). So no sender scope here.
MLLP_PEER = Sender("mllp", frozenset({EVERY_SITE}))


class RowProblem(BaseModel):
    row: int
    column: str
    reason: str


class SdtmOutcome(BaseModel):
    domain: str
    rows: int
    accepted: int
    rejected: list[RowProblem]
    skipped: list[RowProblem]


class SdtmRows(BaseModel):
    """A slice of a dataset's rows (as `safetymon import` sends them): row numbers start at
    `first_row` so the error report names the rows of the file."""

    domain: str = Field(min_length=2, max_length=2)
    first_row: int = Field(1, ge=1)
    utc_offset: str | None = Field(None, pattern=r"^[+-]\d{2}:\d{2}$")
    rows: list[dict[str, Any]] = Field(max_length=MAX_SDTM_ROWS_PER_REQUEST)


# ---------------------------------------------------------------------------------------------
# HL7 v2
# ---------------------------------------------------------------------------------------------


async def handle_hl7(
    publisher: Publisher, directory: Directory, data: bytes, sender: Sender
) -> tuple[int, bytes]:
    """An HL7 v2 message in, its acknowledgement out (encoded like the message), with the HTTP
    status that goes with it: 200 AA, 422 AE/AR (nothing published), 403 AR (a patient of a
    site the sender may not submit for), 503 (resend)."""
    result = hl7v2.convert_oru_bytes(data, directory)
    units = [(0, result.conversion)]
    try:
        outcome = await accept_and_publish(publisher, units, "/v1/hl7", sender)
    except EventLogUnavailable as error:
        return 503, hl7v2.encode(hl7v2.ack_for_failure(result, str(error)), result)
    if outcome.forbidden:
        INGEST_REJECTS.labels("/v1/hl7", "forbidden").inc()
        # AR (rejected for the sender's authority, not the content), and nothing said of the
        # content: only the site refusal.
        result.conversion.problems, result.conversion.skipped = [], []
        for problem in outcome.problems:
            result.refuse(problem.where, problem.reason, "204", reject=True)
        return 403, hl7v2.encode(hl7v2.ack(result), result)
    if outcome.refused:
        INGEST_REJECTS.labels("/v1/hl7", "invalid").inc()
        result.conversion.problems = outcome.problems
        return 422, hl7v2.encode(hl7v2.ack(result), result)
    return 200, hl7v2.encode(hl7v2.ack(result), result)


# ---------------------------------------------------------------------------------------------
# SDTM
# ---------------------------------------------------------------------------------------------


def _row_problems(problems: dict[int, list[Problem]]) -> list[RowProblem]:
    return [
        RowProblem(row=row, column=sdtm.column_of(problem), reason=problem.reason)
        for row, items in sorted(problems.items())
        for problem in items
    ]


def sdtm_outcome(domain: str, rows: int, outcome: Outcome) -> SdtmOutcome:
    return SdtmOutcome(
        domain=domain,
        rows=rows,
        accepted=len(outcome.events),
        rejected=_row_problems(outcome.refused),
        skipped=_row_problems(outcome.skipped),
    )


async def _publish_dataset(
    publisher: Publisher,
    directory: Directory,
    dataset: sdtm.Dataset,
    offset: str | None,
    sender: Sender,
) -> JSONResponse:
    """Each row stands alone: a row for a site the sender may not submit for is one more
    rejected row (with the reason), the others go through."""
    try:
        units = list(sdtm.convert_dataset(dataset, directory, offset))
    except sdtm.BadUtcOffset as error:
        return _unreadable("utc_offset", str(error))
    except InteropError as error:
        return _unreadable("domain", str(error))
    endpoint = f"/v1/sdtm/{dataset.domain.lower()}"
    try:
        outcome = await accept_and_publish(publisher, units, endpoint, sender)
    except EventLogUnavailable as error:
        return JSONResponse({"detail": str(error)}, 503, headers=RETRY_AFTER)
    if outcome.forbidden:
        INGEST_REJECTS.labels(endpoint, "forbidden").inc()
    if len(outcome.refused) > len(outcome.forbidden):
        INGEST_REJECTS.labels(endpoint, "invalid").inc()
    report = sdtm_outcome(dataset.domain, len(units), outcome)
    return JSONResponse(report.model_dump(), status_code=202)


def _unreadable(field: str, reason: str) -> JSONResponse:
    return refusal([(field, reason, None)])


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def add_interop_routes(
    app: FastAPI,
    publisher: Publisher,
    directory: Directory,
    current_sender: Callable[..., Awaitable[Sender]],
) -> None:
    """The HL7 v2, FHIR and SDTM endpoints, each for an authenticated sender
    (`current_sender`, the dependency of services.ingest.senders)."""
    SenderIn = Annotated[Sender, Depends(current_sender)]

    @app.post(
        "/v1/hl7",
        summary="An HL7 v2.x ORU^R01 lab result message (ER7); answers with its ACK",
        openapi_extra={
            "requestBody": {"content": {HL7_MEDIA_TYPE: {"schema": {"type": "string"}}}}
        },
        response_class=Response,
        responses={
            200: {"content": {HL7_MEDIA_TYPE: {}}, "description": "ACK (AA)"},
            422: {"content": {HL7_MEDIA_TYPE: {}}, "description": "ACK (AE or AR), with ERR"},
        },
    )
    async def hl7_message(request: Request, sender: SenderIn) -> Response:
        status, ack = await handle_hl7(publisher, directory, await request.body(), sender)
        headers = RETRY_AFTER if status == 503 else None
        return Response(ack, status, headers=headers, media_type=HL7_MEDIA_TYPE)

    @app.post(
        "/v1/fhir",
        summary="A FHIR R4 resource (Observation, AdverseEvent, MedicationAdministration, "
        "ResearchSubject) or a transaction/batch Bundle; answers with an OperationOutcome",
        response_class=JSONResponse,
        responses={
            422: {
                "description": "An OperationOutcome naming each element refused (expression); "
                "JSON that is no document at all: the fields refused",
                "content": {FHIR_MEDIA_TYPE: {"schema": {"type": "object"}}},
                "model": Refusal,
            }
        },
    )
    async def fhir_resource(
        document: Annotated[Any, Body(media_type=FHIR_MEDIA_TYPE)], sender: SenderIn
    ) -> Any:
        units = fhir.units_of(document, directory)
        try:
            outcome = await accept_and_publish(
                publisher, units, "/v1/fhir", sender, forbidden_refuses_all=True
            )
        except EventLogUnavailable as error:
            body = fhir.operation_outcome([Problem("", str(error))], code="transient")
            return JSONResponse(body, 503, headers=RETRY_AFTER, media_type=FHIR_MEDIA_TYPE)
        if outcome.forbidden:
            # Even a batch's allowed entries are not published: the sender is misconfigured.
            INGEST_REJECTS.labels("/v1/fhir", "forbidden").inc()
            forbidden = [p for problems in outcome.forbidden.values() for p in problems]
            body = fhir.operation_outcome(forbidden, code="forbidden")
            return JSONResponse(body, 403, media_type=FHIR_MEDIA_TYPE)
        if outcome.refused:
            INGEST_REJECTS.labels("/v1/fhir", "invalid").inc()
        body = fhir.outcome_of(outcome.problems, outcome.skipped, len(outcome.events))
        status = 202 if outcome.events or not outcome.refused else 422
        return JSONResponse(body, status, media_type=FHIR_MEDIA_TYPE)

    @app.post(
        "/v1/sdtm/rows",
        summary="A slice of an SDTM dataset's rows as JSON (what `safetymon import` sends)",
        response_model=SdtmOutcome,
        status_code=202,
    )
    async def sdtm_rows(body: SdtmRows, sender: SenderIn) -> Any:
        try:
            dataset = sdtm.dataset_of_rows(body.domain, body.rows, body.first_row)
        except InteropError as error:
            return _unreadable("rows", str(error))
        return await _publish_dataset(publisher, directory, dataset, body.utc_offset, sender)

    @app.post(
        "/v1/sdtm/{domain}",
        summary="A CDISC SDTM dataset (LB, AE, EX or DM) as CSV or SAS transport (.xpt); "
        "good rows go through, rejected rows come back with row, column and reason",
        response_model=SdtmOutcome,
        status_code=202,
        openapi_extra={
            "requestBody": {
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-sas-xport": {"schema": {"type": "string", "format": "binary"}},
                }
            }
        },
    )
    async def sdtm_file(
        request: Request,
        sender: SenderIn,
        domain: str,
        filename: Annotated[str | None, Query(max_length=255)] = None,
        utc_offset: Annotated[str | None, Query(pattern=r"^[+-]\d{2}:\d{2}$")] = None,
    ) -> Any:
        name = filename or f"{domain.lower()}.{_extension(request)}"
        try:
            dataset = sdtm.read_dataset(await request.body(), name)
        except InteropError as error:
            return _unreadable("file", str(error))
        if dataset.domain != domain.upper():
            return _unreadable("domain", f"the file holds {dataset.domain}, not {domain.upper()}")
        return await _publish_dataset(publisher, directory, dataset, utc_offset, sender)


def _extension(request: Request) -> str:
    kind = request.headers.get("content-type", "")
    return "xpt" if "xport" in kind or "octet-stream" in kind else "csv"
