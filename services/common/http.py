"""What every service's HTTP shell has: /metrics, /health, logging set-up."""

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def add_operational_routes(app: FastAPI, service: str, checks: HealthCheck) -> None:
    app.mount("/metrics", make_asgi_app())

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
