"""notification.priority, first_answer_due_at and service_level (DESIGN §10): the merchant's
timers, hours and target as they were when the notification was recorded.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(
            sa.Column("priority", sa.String(16), nullable=False, server_default="normal")
        )
        batch.add_column(
            sa.Column("first_answer_due_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("service_level", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("service_level")
        batch.drop_column("first_answer_due_at")
        batch.drop_column("priority")
