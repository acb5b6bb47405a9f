"""merchant.webhook_subscriptions: how many live outbound webhooks the merchant has.

Every status change of a notification writes its webhook events in the same transaction; the
count on the merchant row (which those transactions have loaded already) lets a merchant without
webhooks, the common case, skip the subscription read altogether (issue 17), and makes the
per-merchant limit one conditional UPDATE instead of a count-then-insert race.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("merchant") as batch:
        batch.add_column(
            sa.Column("webhook_subscriptions", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE merchant SET webhook_subscriptions = ("
        " SELECT count(*) FROM webhook_subscription s"
        " WHERE s.merchant_id = merchant.id AND s.deleted_at IS NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("merchant") as batch:
        batch.drop_column("webhook_subscriptions")
