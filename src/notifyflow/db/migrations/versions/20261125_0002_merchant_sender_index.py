"""Index merchant.whatsapp_sender: every inbound webhook finds its merchant by the number it
was sent to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_merchant_whatsapp_sender", "merchant", ["whatsapp_sender"])


def downgrade() -> None:
    op.drop_index("ix_merchant_whatsapp_sender", table_name="merchant")
