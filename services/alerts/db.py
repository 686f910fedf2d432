"""Alert store schema (SQLAlchemy Core) and engine set-up. The schema is created by Alembic
(services/alerts/migrations); these table objects are what the code queries."""

import fcntl
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class UtcDateTime(TypeDecorator):
    """Timestamps stored in UTC and read back as aware UTC datetimes, on every database: SQLite
    keeps no offset, so a deadline written as 10:00+08:00 would come back as a bare 10:00."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing a naive datetime: its time zone is unknown")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Uuid, primary_key=True),
    Column("study_id", String(50), nullable=False),
    Column("site_id", String(50), nullable=False),
    Column("subject_id", String(50), nullable=False),
    Column("rule_id", String(50), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("title", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("trigger_event_id", Uuid, nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("raised_at", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime()),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UtcDateTime()),
    Column("acknowledgement_comment", Text),
    Column("escalation_tier", Integer, nullable=False, server_default="0"),
    Column("resolved_by", String(200)),
    Column("resolved_at", UtcDateTime()),
    Column("resolution_comment", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_alerts_status_severity", "status", "severity"),
    Index("ix_alerts_subject", "subject_id"),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("alert_id", Uuid, ForeignKey("alerts.alert_id"), nullable=False, index=True),
    Column("event_type", String(50), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("actor", String(200)),
    Column("event", JSON, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", Uuid, primary_key=True),
    Column("alert_id", Uuid, ForeignKey("alerts.alert_id"), nullable=False, index=True),
    Column("alert_state", String(20), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    Column("next_attempt_at", UtcDateTime()),
    Index("ix_notifications_status", "status"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("attempt_id", Uuid, primary_key=True),
    Column(
        "notification_id",
        Uuid,
        ForeignKey("notifications.notification_id"),
        nullable=False,
        index=True,
    ),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("error", Text),
)

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(database_url: str) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        Path(database_url.split("///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(database_url, pool_pre_ping=True)


def upgrade_schema(database_url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`). Runs its own event loop:
    call it from a thread when a loop is already running."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    if not database_url.startswith("sqlite"):
        command.upgrade(config, "head")  # serialised by an advisory lock (migrations/env.py)
        return
    # SQLite has no advisory lock: services starting at once take turns on a lock file.
    lock_path = Path(database_url.split("///", 1)[-1] + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(config, "head")
