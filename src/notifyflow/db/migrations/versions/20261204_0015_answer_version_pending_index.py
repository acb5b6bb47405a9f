"""Index answer_version's pending rows by time: the corrections' sweep (every
NOTIFYFLOW_SWEEP_EVERY_SECONDS) looks for pending versions older than the grace and scanned
the whole table for them; the pending ones are few, so the index holds only them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_index(
        "ix_answer_version_pending_created",
        "answer_version",
        ["created_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_answer_version_pending_created", table_name="answer_version")
