"""Alembic environment: runs migrations over the async engine the services use."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.alerts.db import create_engine, metadata

config = context.config
# Two services may start at once and both upgrade: on PostgreSQL the second waits here until the
# first has committed, then finds nothing left to do.
MIGRATION_LOCK = 5_173_246


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        context.run_migrations()


async def run_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
