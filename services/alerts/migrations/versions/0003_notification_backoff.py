"""When a failed notification may be tried again (exponential backoff).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("next_attempt_at")
