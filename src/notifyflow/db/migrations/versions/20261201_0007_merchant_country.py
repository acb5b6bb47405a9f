"""merchant.country: the ISO 3166-1 alpha-2 country national phone numbers are read in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchant") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("merchant") as batch:
        batch.drop_column("country")
