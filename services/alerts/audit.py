"""The audit trail of the safety desk: who did what to which alert, when, and from where.

An append-only table (`audit_log`) in the alert store's database. GCP (ICH E6(R3) 4.2 / 21 CFR
Part 11 §11.10(e)) wants a secure, computer-generated, time-stamped audit trail that records who
did what and when, and whose entries are never changed or removed: so `AuditLog` can only add
entries and read them back, never update or delete one; and the migration (0004) backs that with
database triggers that refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL). A correction is a
new entry that says what it corrects. In production, grant the service's database role INSERT and
SELECT on `audit_log` only.
"""

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Table, Uuid, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.auth import User
from services.alerts.db import UtcDateTime, metadata
from shared.events import utc_now

audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", Uuid, primary_key=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("role", String(50), nullable=False),
    Column("action", String(50), nullable=False),
    Column("target", String(200)),
    Column("subject_id", String(50)),
    Column("site_id", String(50)),
    Column("client_ip", String(64)),
    Column("detail", JSON),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_user_at", "user_id", "at"),
    Index("ix_audit_log_subject", "subject_id"),
)

_ACTION = re.compile(r"[a-z][a-z0-9._-]{0,49}")
MAX_EXPORT = 100_000


class AuditLog:
    """Append-only: `record` adds an entry, `export` reads entries back in time order. There is
    no update or delete, on purpose (see the module docstring: a GCP audit trail is never
    altered)."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self._clock = clock

    async def record(
        self,
        user: User,
        action: str,
        *,
        target: str | uuid.UUID | None = None,
        subject_id: str | None = None,
        site_id: str | None = None,
        client_ip: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        """Add one entry (its own transaction) and return its id. `action` is a short lowercase
        verb such as "acknowledge", "resolve", "sign-in" or "alert.view"; `detail` any
        JSON-serialisable mapping (never a password or a token)."""
        if not isinstance(action, str) or not _ACTION.fullmatch(action):
            raise ValueError(
                f"audit action {action!r} must be 1-50 characters of a-z, 0-9 and ._- "
                "starting with a letter"
            )
        if detail is not None:
            if not isinstance(detail, dict):
                raise TypeError("audit detail must be a mapping")
            try:
                json.dumps(detail)
            except (TypeError, ValueError) as error:
                raise ValueError(f"audit detail is not JSON-serialisable: {error}") from None
        audit_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(audit_log).values(
                    audit_id=audit_id,
                    at=self._clock(),
                    user_id=user.user_id,
                    role=str(user.role),
                    action=action,
                    target=None if target is None else str(target)[:200],
                    subject_id=subject_id,
                    site_id=site_id,
                    client_ip=None if client_ip is None else client_ip[:64],
                    detail=detail,
                )
            )
        return audit_id

    async def export(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10_000,
        *,
        user_id: str | None = None,
        action: str | None = None,
        subject_id: str | None = None,
        site_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Entries with `since <= at < until` (either bound optional; aware datetimes), matching
        the optional filters, oldest first (ties by audit_id), at most `limit` of them."""
        if not 1 <= limit <= MAX_EXPORT:
            raise ValueError(f"limit must be between 1 and {MAX_EXPORT}")
        query = select(audit_log)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if until is not None:
            query = query.where(audit_log.c.at < until)
        for column, value in (
            (audit_log.c.user_id, user_id),
            (audit_log.c.action, action),
            (audit_log.c.subject_id, subject_id),
            (audit_log.c.site_id, site_id),
        ):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(audit_log.c.at, audit_log.c.audit_id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(row) for row in rows]
