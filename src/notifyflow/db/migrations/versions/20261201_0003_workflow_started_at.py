"""notification.workflow_started_at: when its workflow was known to be running.

A request records its row first and starts its workflow second; if the start fails (Temporal
away, the API process killed between the two steps), the row stays NULL here and the workers'
sweeper starts the workflow later. Rows that existed before this migration are left NULL: the
sweeper checks each still-requested one once (a running workflow is joined, never duplicated),
which also heals any orphan an older release left behind.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(
            sa.Column("workflow_started_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("workflow_started_at")
