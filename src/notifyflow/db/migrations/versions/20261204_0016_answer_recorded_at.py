"""notification_answer.recorded_at: when notifyflow wrote the attempt down. ``created_at`` is
when it was made; an accepted answer is written with its sends, after the workflow took it
(its localization in between), and a refusal the workflow made is written by an activity. The
live event stream sends entries in the order they were recorded, so one written late is not
slipped in before entries a listener has already had. Earlier rows are left NULL: readers take
their ``created_at`` (a backfill would rewrite every row of the table in this migration).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_answer") as batch:
        batch.add_column(sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_answer") as batch:
        batch.drop_column("recorded_at")
