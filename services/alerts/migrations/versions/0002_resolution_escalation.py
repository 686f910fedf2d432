"""Resolution and escalation of alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("escalation_tier", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("resolved_by", sa.String(200)))
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("resolution_comment", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("resolution_comment")
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by")
        batch.drop_column("escalation_tier")
