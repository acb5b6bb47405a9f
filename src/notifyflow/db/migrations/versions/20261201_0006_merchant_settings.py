"""merchant_settings: business hours and per-merchant service levels (DESIGN §10).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "merchant_settings",
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("business_hours", JSON, nullable=True),
        sa.Column("remind_after", sa.Integer(), nullable=True),
        sa.Column("escalate_after", sa.Integer(), nullable=True),
        sa.Column("auto_close_after", sa.Integer(), nullable=True),
        sa.Column("first_answer_target", sa.Integer(), nullable=True),
        sa.Column("csat_enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", name="pk_merchant_settings"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_merchant_settings_merchant_id_merchant"
        ),
    )


def downgrade() -> None:
    op.drop_table("merchant_settings")
