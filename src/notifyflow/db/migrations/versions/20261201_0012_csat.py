"""csat_response (DESIGN §10): the customer's satisfaction ask and rating, one row per
notification (the primary key is what makes "asked once, rated once" hold in the database).

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "csat_response",
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_message_sid", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_csat_response_notification_id_notification",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_csat_response_merchant_id_merchant"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_csat_response_conversation_id_conversation",
        ),
        sa.PrimaryKeyConstraint("notification_id", name="pk_csat_response"),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 1 AND score <= 5)", name="ck_csat_response_score_range"
        ),
    )
    op.create_index(
        "ix_csat_response_conversation_asked", "csat_response", ["conversation_id", "asked_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_csat_response_conversation_asked", table_name="csat_response")
    op.drop_table("csat_response")
