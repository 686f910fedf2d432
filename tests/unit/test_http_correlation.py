"""Every request runs under a correlation id: the caller's X-Correlation-ID when it is a UUID,
else a new one; the handler's log context has it, and the response gives it back."""

import uuid

import httpx
from fastapi import FastAPI

from services.common.http import add_operational_routes
from services.common.logs import current_context


async def no_dependencies() -> dict[str, bool]:
    return {}


def app_seeing_its_context() -> FastAPI:
    app = FastAPI()
    add_operational_routes(app, "test", no_dependencies)

    @app.get("/seen")
    async def seen() -> dict[str, str]:
        return current_context()

    return app


async def get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app_seeing_its_context())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path, headers=headers)


async def test_a_callers_uuid_is_the_requests_correlation_id_and_comes_back() -> None:
    given = str(uuid.uuid4())
    response = await get("/seen", {"X-Correlation-ID": given})
    assert response.json()["correlation_id"] == given
    assert response.headers["X-Correlation-ID"] == given


async def test_free_text_is_replaced_by_a_new_id_and_every_answer_carries_one() -> None:
    response = await get("/seen", {"X-Correlation-ID": "drop table"})
    made = response.headers["X-Correlation-ID"]
    assert uuid.UUID(made) and response.json()["correlation_id"] == made
    assert uuid.UUID((await get("/live")).headers["X-Correlation-ID"])
    assert uuid.UUID((await get("/metrics/")).headers["X-Correlation-ID"])
