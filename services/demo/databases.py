"""Scratch databases for the tests and the benchmarks."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def scratch_database(url: str, prefix: str, keep: bool = False) -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server of `url` (a SQLAlchemy URL with the asyncpg
    driver), dropped on exit unless `keep`; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_dsn = asyncpg_dsn(url)
    await _execute(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        if not keep:
            await _execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def asyncpg_dsn(url: str) -> str:
    """The DSN asyncpg takes for a SQLAlchemy `postgresql+asyncpg://` URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
