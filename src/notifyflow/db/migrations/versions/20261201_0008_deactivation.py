"""merchant.deactivated_at, merchant_user.deactivated_at: DELETE deactivates, history stays.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("merchant", "merchant_user"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ("merchant_user", "merchant"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deactivated_at")
