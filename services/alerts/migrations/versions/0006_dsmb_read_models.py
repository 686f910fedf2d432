"""DSMB read models: versioned fact tables and retractions (services/dsmb/readmodels.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)


def _fact_table(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("version_id", sa.Uuid(), primary_key=True),
        sa.Column("part", sa.String(50), primary_key=True, server_default=""),
        sa.Column("fact_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", _AT, nullable=False),
        sa.Column("study_id", sa.String(50), nullable=False),
        sa.Column("site_id", sa.String(50), nullable=False),
        sa.Column("subject_id", sa.String(50), nullable=False),
        *columns,
    )
    op.create_index(f"ix_{name}_fact", name, ["fact_id", "recorded_at"])
    op.create_index(f"ix_{name}_subject", name, ["subject_id"])


def upgrade() -> None:
    _fact_table(
        "dsmb_subjects",
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("age_years", sa.Integer(), nullable=False),
        sa.Column("platinum", sa.String(50), nullable=False),
        sa.Column("liver_metastases", sa.Boolean(), nullable=False),
    )
    _fact_table(
        "dsmb_doses",
        sa.Column("drug", sa.String(50), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("dose", sa.Float(), nullable=False),
        sa.Column("dose_unit", sa.String(10), nullable=False),
        sa.Column("administered_at", _AT, nullable=False),
    )
    _fact_table(
        "dsmb_adverse_events",
        sa.Column("term", sa.String(200), nullable=False),
        sa.Column("soc", sa.String(200), nullable=False),
        sa.Column("grade", sa.Integer(), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("immune_related", sa.Boolean(), nullable=False),
        sa.Column("related_drugs", sa.String(500), nullable=False),
        sa.Column("onset_date", sa.Date(), nullable=False),
        sa.Column("resolved_date", sa.Date()),
    )
    _fact_table(
        "dsmb_lab_grades",
        sa.Column("lab_event_id", sa.Uuid(), nullable=False),
        sa.Column("test", sa.String(20), nullable=False),
        sa.Column("term", sa.String(200), nullable=False),
        sa.Column("grade", sa.Integer()),
        sa.Column("collected_at", _AT, nullable=False),
        sa.Column("value_si", sa.Float(), nullable=False),
        sa.Column("unit_si", sa.String(30), nullable=False),
        sa.Column("value_per_uln", sa.Float()),
    )
    _fact_table(
        "dsmb_dose_decisions",
        sa.Column("rule_id", sa.String(50), nullable=False),
        sa.Column("cause_id", sa.Uuid()),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_level", sa.Integer()),
        sa.Column("to_level", sa.Integer()),
        sa.Column("decided_for", _AT, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    _fact_table(
        "dsmb_alerts",
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.String(50), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
    )
    _fact_table(
        "dsmb_acknowledgements",
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("acknowledged_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "dsmb_retractions",
        sa.Column("version_id", sa.Uuid(), primary_key=True),
        sa.Column("retracted_event_id", sa.Uuid(), nullable=False),
        sa.Column("recorded_at", _AT, nullable=False),
        sa.Column("subject_id", sa.String(50), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_dsmb_retractions_retracted_event_id", "dsmb_retractions", ["retracted_event_id"]
    )


def downgrade() -> None:
    for name in (
        "dsmb_retractions",
        "dsmb_acknowledgements",
        "dsmb_alerts",
        "dsmb_dose_decisions",
        "dsmb_lab_grades",
        "dsmb_adverse_events",
        "dsmb_doses",
        "dsmb_subjects",
    ):
        op.drop_table(name)
