"""The body of every refusal ingest answers in JSON (a 422, a 403, a 401): the fields and why.

Documented in each operation's OpenAPI in place of FastAPI's HTTPValidationError, which is not
what ingest answers."""

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class FieldProblem(BaseModel):
    field: str = Field(description="The field refused, dotted (a batch: its index first)")
    reason: str
    type: str | None = Field(None, description="The validation error's kind, where there is one")


class Refusal(BaseModel):
    detail: list[FieldProblem]


REFUSAL_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {"model": Refusal, "description": "Refused: each field with the reason"}
}


def refusal(problems: list[tuple[str, str, str | None]], status: int = 422) -> JSONResponse:
    """(field, reason, type) of each problem."""
    body = Refusal(detail=[FieldProblem(field=f, reason=r, type=t) for f, r, t in problems])
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)
