"""DSMB read models (SQLAlchemy Core): one table per kind of fact, built by the projector.

Every row is one version of a fact, stamped with when safetymon recorded it, so any rollup can be
taken "as of" a cut-off: a fact's visible version is its latest one recorded by then, unless a
retraction recorded by then withdrew it (see `visible`). Rows are never updated, only added, so
projecting the same event twice changes nothing and a rebuild from the log gives the same rows.
"""

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    Uuid,
    and_,
    exists,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from services.alerts.db import UtcDateTime

metadata = MetaData()


def _fact_table(name: str, *columns: Column) -> Table:
    """A versioned fact table: `version_id` is the event that stated this version, `fact_id`
    the event that first stated the fact (a correction is a new version of the same fact), `part`
    tells apart the rows one event gives (a decision's drugs)."""
    return Table(
        name,
        metadata,
        Column("version_id", Uuid, primary_key=True),
        Column("part", String(50), primary_key=True, server_default=""),
        Column("fact_id", Uuid, nullable=False),
        Column("recorded_at", UtcDateTime(), nullable=False),
        Column("study_id", String(50), nullable=False),
        Column("site_id", String(50), nullable=False),
        Column("subject_id", String(50), nullable=False),
        *columns,
        Index(f"ix_{name}_fact", "fact_id", "recorded_at"),
        Index(f"ix_{name}_subject", "subject_id"),
    )


subjects = _fact_table(
    "dsmb_subjects",
    Column("enrolled_on", Date, nullable=False),
    Column("sex", String(1), nullable=False),
    Column("age_years", Integer, nullable=False),
    Column("platinum", String(50), nullable=False),
    Column("liver_metastases", Boolean, nullable=False),
)

doses = _fact_table(
    "dsmb_doses",
    Column("drug", String(50), nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("dose", Float, nullable=False),
    Column("dose_unit", String(10), nullable=False),
    Column("administered_at", UtcDateTime(), nullable=False),
)

adverse_events = _fact_table(
    "dsmb_adverse_events",
    Column("term", String(200), nullable=False),
    Column("soc", String(200), nullable=False),
    Column("grade", Integer, nullable=False),
    Column("serious", Boolean, nullable=False),
    Column("immune_related", Boolean, nullable=False),
    Column("related_drugs", String(500), nullable=False),  # comma-separated; "" = not related
    Column("onset_date", Date, nullable=False),
    Column("resolved_date", Date),
)

lab_grades = _fact_table(
    "dsmb_lab_grades",
    Column("lab_event_id", Uuid, nullable=False),
    Column("test", String(20), nullable=False),
    Column("term", String(200), nullable=False),
    Column("grade", Integer),  # None: the grade could not be decided
    Column("collected_at", UtcDateTime(), nullable=False),
    Column("value_si", Float, nullable=False),
    Column("unit_si", String(30), nullable=False),
    Column("value_per_uln", Float),
)

dose_decisions = _fact_table(
    "dsmb_dose_decisions",
    Column("rule_id", String(50), nullable=False),  # part: the drug
    Column("cause_id", Uuid),  # the clinical event the decision was made on
    Column("action", String(20), nullable=False),
    Column("from_level", Integer),
    Column("to_level", Integer),
    Column("decided_for", UtcDateTime(), nullable=False),  # clinical time of the cause
    Column("reason", Text, nullable=False),
)

alerts = _fact_table(
    "dsmb_alerts",
    Column("alert_id", Uuid, nullable=False),
    Column("rule_id", String(50), nullable=False),
    Column("severity", String(20), nullable=False),
)

acknowledgements = _fact_table(
    "dsmb_acknowledgements",
    Column("alert_id", Uuid, nullable=False),
    Column("acknowledged_by", String(200), nullable=False),
)

retractions = Table(
    "dsmb_retractions",
    metadata,
    Column("version_id", Uuid, primary_key=True),
    Column("retracted_event_id", Uuid, nullable=False, index=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("subject_id", String(50), nullable=False),
    Column("reason", Text, nullable=False),
)

FACT_TABLES: tuple[Table, ...] = (
    subjects,
    doses,
    adverse_events,
    lab_grades,
    dose_decisions,
    alerts,
    acknowledgements,
)
READ_MODELS: tuple[Table, ...] = (*FACT_TABLES, retractions)


def visible(table: Table, cutoff: datetime | ColumnElement) -> Select:
    """The rows of `table` in force as of `cutoff`: each fact's latest version recorded by then
    (ties broken by version id, so the answer never depends on row order), unless a retraction of
    the fact recorded by then withdrew it."""
    later = table.alias("later")
    superseded = exists().where(
        later.c.fact_id == table.c.fact_id,
        later.c.part == table.c.part,
        later.c.recorded_at <= cutoff,
        or_(
            later.c.recorded_at > table.c.recorded_at,
            and_(
                later.c.recorded_at == table.c.recorded_at,
                later.c.version_id > table.c.version_id,
            ),
        ),
    )
    withdrawn = exists().where(
        retractions.c.retracted_event_id == table.c.fact_id, retractions.c.recorded_at <= cutoff
    )
    return select(table).where(table.c.recorded_at <= cutoff, ~superseded, ~withdrawn)


async def create_current_views(engine: AsyncEngine) -> None:
    """On PostgreSQL, a view `<table>_current` per fact table: its rows in force now, for ad hoc
    SQL by the statisticians (the same `visible` the rollups use, at now())."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.begin() as connection:
        for table in FACT_TABLES:
            query = visible(table, func.now()).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
            await connection.execute(
                text(f"CREATE OR REPLACE VIEW {table.name}_current AS {query}")
            )
