"""What every service's HTTP shell has: /metrics, /live, /health, correlation ids."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from services.common.logs import CORRELATION_HEADER, correlation_id_from, log_context

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]


def add_operational_routes(app: FastAPI, service: str, checks: HealthCheck) -> None:
    app.mount("/metrics", make_asgi_app())

    @app.middleware("http")
    async def correlate(request: Request, call_next: Callable) -> Response:
        """Every request runs under a correlation id (the caller's X-Correlation-ID when it is
        a UUID), given back in the response; ingest stamps it on the events it publishes."""
        correlation_id = correlation_id_from(request.headers.get(CORRELATION_HEADER))
        with log_context(correlation_id=correlation_id):
            response = await call_next(request)
        response.headers[CORRELATION_HEADER] = str(correlation_id)
        return response

    @app.get("/live", tags=["operations"])
    async def live() -> dict[str, str]:
        """The process answers (liveness): no dependency checked, so a broker outage does not
        get every pod restarted; /health says whether it can work (readiness)."""
        return {"service": service, "status": "alive"}

    @app.get("/health", tags=["operations"])
    async def health() -> JSONResponse:
        results = await checks()
        healthy = all(results.values())
        return JSONResponse(
            {"service": service, "status": "ok" if healthy else "unavailable", "checks": results},
            status_code=200 if healthy else 503,
        )
