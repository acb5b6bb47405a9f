"""answer_version: every version of a delivered notification's answer (DESIGN §10
corrections); for a question, its Document's content by version.

Revision ID: 0014
Revises: 0013 (written as 0011 on 0009; renumbered and chained after csat when main was merged)
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "answer_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=True),
        sa.Column("answered_by", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("correction_key", sa.String(200), nullable=True),
        sa.Column("localized_fragment", sa.Text(), nullable=True),
        sa.Column("localized_sentence", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delivery_method", sa.String(16), nullable=True),
        sa.Column("provider_message_id", sa.String(64), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_answer_version"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_answer_version_notification_id_notification",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["document.id"], name="fk_answer_version_document_id_document"
        ),
        sa.ForeignKeyConstraint(
            ["answered_by"],
            ["merchant_user.id"],
            name="fk_answer_version_answered_by_merchant_user",
        ),
        sa.UniqueConstraint("notification_id", "version", name="uq_answer_version_number"),
        sa.UniqueConstraint(
            "notification_id", "correction_key", name="uq_answer_version_correction_key"
        ),
    )
    op.create_index("ix_answer_version_document_id", "answer_version", ["document_id"])


def downgrade() -> None:
    op.drop_index("ix_answer_version_document_id", table_name="answer_version")
    op.drop_table("answer_version")
