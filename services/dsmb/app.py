"""DSMB service: projects every event into the read models and answers rollup queries as of a
data cut-off."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import func, select, text

from services.alerts.db import create_engine, upgrade_schema
from services.common.consumer import subscribe_batch
from services.common.heap import settle_heap
from services.common.http import add_operational_routes
from services.common.logs import configure_logging, event_context
from services.dsmb.projector import Projector
from services.dsmb.readmodels import READ_MODELS, create_current_views
from services.dsmb.rollups import (
    CutoffError,
    RollupTable,
    all_rollups,
    load_snapshot,
    parse_cutoff,
)
from shared.ae_dictionary import load_ae_dictionary
from shared.events import Envelope, utc_now
from shared.kafka import broker_running, make_broker
from shared.metrics import PROJECTED_EVENTS
from shared.protocol import study_protocol
from shared.settings import Settings, get_settings
from shared.topics import ALERTS, ASSESSMENTS, CLINICAL_EVENTS

log = logging.getLogger(__name__)


class FieldRefusal(BaseModel):
    field: str
    reason: str


class CutoffRefused(BaseModel):
    detail: FieldRefusal


class NotFound(BaseModel):
    detail: str


# The answers other than 200, as the OpenAPI document states them.
CUTOFF_REFUSED = {422: {"model": CutoffRefused, "description": "The cut-off cannot be read"}}
NO_ROLLUP = {404: {"model": NotFound, "description": "No rollup of that name"}}
CUTOFF_HELP = (
    "Events recorded up to this instant: an ISO date (the end of that day, UTC) or a date-time "
    "with its UTC offset; default: now."
)


class ProjectionBatch:
    """A batch of events projected into the read models in one transaction (the projection is
    idempotent by event id, so a batch delivered again changes nothing)."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.events: list[Envelope] = []

    async def stage(self, event: Envelope, partition: int, offset: int, raw: bytes) -> None:
        self.events.append(event)

    async def flush(self) -> None:
        if self.events:
            await self.projector.project(self.events)
        for event in self.events:
            PROJECTED_EVENTS.labels(event.event_type).inc()
            with event_context(event):  # one line per event: its correlation id can be followed
                log.info("projected %s of %s", event.event_type, event.subject_id)
        self.discard()

    def discard(self) -> None:
        self.events = []


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, "dsmb", settings.log_format)
    broker = make_broker(settings, client_id="safetymon-dsmb")
    engine = create_engine(settings.database_url)
    dictionary = load_ae_dictionary()
    protocol = study_protocol(settings.study_id, settings.protocol_file)
    projector = Projector(engine, dictionary)

    # One consumer group per topic: each topic's events are projected independently.
    consumers = {
        f"dsmb-{name}": [settings.topic(topic)]
        for name, topic in (
            ("clinical", CLINICAL_EVENTS),
            ("assessments", ASSESSMENTS),
            ("alerts", ALERTS),
        )
    }
    for consumer, (topic,) in consumers.items():
        subscribe_batch(broker, settings, consumer, topic, ProjectionBatch(projector))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(upgrade_schema, settings.database_url)
        await create_current_views(engine)
        async with broker_running(settings, broker, lag_of=consumers):
            settle_heap()
            yield
        await engine.dispose()

    app = FastAPI(title="safetymon DSMB rollups", version="1", lifespan=lifespan)

    async def checks() -> dict[str, bool]:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            database = True
        except Exception:
            database = False
        return {"kafka": await broker.ping(timeout=2.0), "database": database}

    add_operational_routes(app, "dsmb", checks)

    async def tables_at(cutoff: str | None) -> list[RollupTable]:
        try:
            instant = parse_cutoff(cutoff) if cutoff else utc_now()
        except CutoffError as error:
            raise HTTPException(422, {"field": "cutoff", "reason": str(error)}) from None
        return all_rollups(await load_snapshot(engine, instant), protocol, dictionary)

    @app.get("/v1/dsmb/read-models")
    async def read_model_rows() -> dict[str, int]:
        """Rows per read model: how far the projection has got."""
        async with engine.connect() as connection:
            return {
                table.name: (
                    await connection.execute(select(func.count()).select_from(table))
                ).scalar_one()
                for table in READ_MODELS
            }

    @app.get("/v1/dsmb/rollups", response_model=list[RollupTable], responses=CUTOFF_REFUSED)
    async def rollups(
        cutoff: Annotated[str | None, Query(description=CUTOFF_HELP)] = None,
    ) -> list[RollupTable]:
        """Every DSMB table as of the cut-off."""
        return await tables_at(cutoff)

    @app.get(
        "/v1/dsmb/rollups/{name}",
        response_model=RollupTable,
        responses=CUTOFF_REFUSED | NO_ROLLUP,
    )
    async def rollup(
        name: str, cutoff: Annotated[str | None, Query(description=CUTOFF_HELP)] = None
    ) -> RollupTable:
        """One DSMB table (disposition, exposure, ae_by_soc, ...) as of the cut-off."""
        tables = {table.name: table for table in await tables_at(cutoff)}
        if name not in tables:
            raise HTTPException(404, f"no rollup '{name}'; there are: {', '.join(tables)}")
        return tables[name]

    return app
