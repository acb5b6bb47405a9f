"""webhook_subscription and webhook_event: signed outbound webhooks (DESIGN §8).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "webhook_subscription",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("secret", sa.String(80), nullable=False),
        _ts("created_at", nullable=False),
        _ts("deleted_at"),
        _ts("last_success_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("last_error_at"),
        sa.Column("failed_events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_subscription"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_webhook_subscription_merchant_id_merchant"
        ),
    )
    op.create_index("ix_webhook_subscription_merchant_id", "webhook_subscription", ["merchant_id"])
    op.create_table(
        "webhook_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        _ts("dispatched_at"),
        _ts("delivered_at"),
        _ts("failed_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_event"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscription.id"],
            name="fk_webhook_event_subscription_id_webhook_subscription",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_webhook_event_notification_id_notification",
        ),
    )
    op.create_index("ix_webhook_event_undispatched", "webhook_event", ["dispatched_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_event_undispatched", table_name="webhook_event")
    op.drop_table("webhook_event")
    op.drop_index("ix_webhook_subscription_merchant_id", table_name="webhook_subscription")
    op.drop_table("webhook_subscription")
