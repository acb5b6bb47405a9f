"""Initial schema: merchants, people, conversations, documents, notifications and their ledgers.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Written out in full rather than importing ``notifyflow.db.tables``, so that later changes to the
tables cannot rewrite history. Constraint and index names are those the naming convention of
``tables.py`` produces, so autogenerate finds no difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL (indexable, compact); plain JSON text elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ONE_ACCEPTED = "accepted AND single_answer"


def _ts(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "merchant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("whatsapp_sender", sa.String(64), nullable=False),
        sa.Column("instagram_page_id", sa.String(64), nullable=True),
        sa.Column("default_language", sa.String(16), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_merchant"),
    )

    op.create_table(
        "conversation_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("instagram_user_id", sa.String(64), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_user"),
        sa.UniqueConstraint("phone", name="uq_conversation_user_phone"),
        sa.UniqueConstraint("instagram_user_id", name="uq_conversation_user_instagram_user_id"),
    )

    op.create_table(
        "campaign_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("merchant_scope", sa.Integer(), nullable=False),
        sa.Column("content_sid", sa.String(34), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _ts("updated_at"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_template"),
        sa.UniqueConstraint(
            "campaign", "language", "merchant_scope", name="uq_campaign_template_scope"
        ),
    )

    op.create_table(
        "inbound_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(128), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_inbound_event"),
        sa.UniqueConstraint("event_key", name="uq_inbound_event_event_key"),
    )

    op.create_table(
        "merchant_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("user_type", sa.String(64), nullable=False),
        sa.Column("on_call", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_merchant_user"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_merchant_user_merchant_id_merchant"
        ),
        sa.UniqueConstraint("merchant_id", "phone", name="uq_merchant_user_phone"),
    )
    op.create_index("ix_merchant_user_user_type", "merchant_user", ["user_type"])

    op.create_table(
        "conversation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("conversation_user_id", sa.Integer(), nullable=False),
        sa.Column("merchant_user_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("language", sa.String(16), nullable=True),
        _ts("last_inbound_at", nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_conversation"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_conversation_merchant_id_merchant"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_user_id"],
            ["conversation_user.id"],
            name="fk_conversation_conversation_user_id_conversation_user",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_user_id"],
            ["merchant_user.id"],
            name="fk_conversation_merchant_user_id_merchant_user",
        ),
        sa.UniqueConstraint(
            "merchant_id", "conversation_user_id", "channel", name="uq_conversation_person_channel"
        ),
    )
    op.create_index("ix_conversation_merchant_user_id", "conversation", ["merchant_user_id"])

    op.create_table(
        "message",
        # INTEGER on SQLite, where only that exact type is an auto-incrementing rowid alias.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("other_data", JSON, nullable=False),
        sa.Column("whatsapp_payload", JSON, nullable=True),
        sa.Column("provider_message_id", sa.String(64), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_message"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_message_conversation_id_conversation",
        ),
        sa.UniqueConstraint("provider_message_id", name="uq_message_provider_message_id"),
    )
    op.create_index("ix_message_conversation_created", "message", ["conversation_id", "created_at"])

    op.create_table(
        "document",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        _ts("updated_at"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_document"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_document_merchant_id_merchant"
        ),
    )
    op.create_index("ix_document_merchant_category", "document", ["merchant_id", "category"])

    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("answer_schema", JSON, nullable=False),
        sa.Column("allow_multiple_answers", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("document_id", sa.Integer(), nullable=True),
        sa.Column("answered_by", sa.Integer(), nullable=True),
        sa.Column("localized_fragment", sa.Text(), nullable=True),
        sa.Column("localized_sentence", sa.Text(), nullable=True),
        sa.Column("delivery_method", sa.String(16), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        _ts("updated_at"),
        _ts("answered_at", nullable=True),
        _ts("delivered_at", nullable=True),
        _ts("closed_at", nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_notification_merchant_id_merchant"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_notification_conversation_id_conversation",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["document.id"], name="fk_notification_document_id_document"
        ),
        sa.ForeignKeyConstraint(
            ["answered_by"],
            ["merchant_user.id"],
            name="fk_notification_answered_by_merchant_user",
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_notification_idempotency_key"),
        # NOTIF_<n> is also the workflow id: SQLite must never reuse a deleted id.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notification_merchant_status", "notification", ["merchant_id", "status"])
    op.create_index("ix_notification_status_created", "notification", ["status", "created_at"])

    op.create_table(
        "notification_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("merchant_user_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        _ts("added_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_recipient"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_notification_recipient_notification_id_notification",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_user_id"],
            ["merchant_user.id"],
            name="fk_notification_recipient_merchant_user_id_merchant_user",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_notification_recipient_conversation_id_conversation",
        ),
        sa.UniqueConstraint(
            "notification_id",
            "merchant_user_id",
            name="uq_notification_recipient_user",
        ),
    )
    op.create_index(
        "ix_notification_recipient_notification_id",
        "notification_recipient",
        ["notification_id"],
    )

    op.create_table(
        "notification_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("answered_by", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("answer_text", sa.Text(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("single_answer", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notification_answer"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_notification_answer_notification_id_notification",
        ),
        sa.ForeignKeyConstraint(
            ["answered_by"],
            ["merchant_user.id"],
            name="fk_notification_answer_answered_by_merchant_user",
        ),
    )
    op.create_index(
        "ix_notification_answer_notification_id", "notification_answer", ["notification_id"]
    )
    # At most one accepted answer per single-answer notification, whatever the application does;
    # rejected attempts and multi-answer notifications are not limited.
    op.create_index(
        "uq_notification_answer_one_accepted",
        "notification_answer",
        ["notification_id"],
        unique=True,
        postgresql_where=sa.text(ONE_ACCEPTED),
        sqlite_where=sa.text(ONE_ACCEPTED),
    )

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("recipient_kind", sa.String(16), nullable=False),
        sa.Column("merchant_user_id", sa.Integer(), nullable=True),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("to_address", sa.String(64), nullable=False),
        sa.Column("campaign", sa.String(64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_message_id", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_delivery"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.id"],
            name="fk_delivery_notification_id_notification",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_user_id"],
            ["merchant_user.id"],
            name="fk_delivery_merchant_user_id_merchant_user",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversation.id"],
            name="fk_delivery_conversation_id_conversation",
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_delivery_idempotency_key"),
    )
    op.create_index("ix_delivery_notification_id", "delivery", ["notification_id"])
    op.create_index("ix_delivery_provider_message_id", "delivery", ["provider_message_id"])


def downgrade() -> None:
    # Children before parents; dropping a table drops its indexes.
    for table in (
        "delivery",
        "notification_answer",
        "notification_recipient",
        "notification",
        "document",
        "message",
        "conversation",
        "merchant_user",
        "inbound_event",
        "campaign_template",
        "conversation_user",
        "merchant",
    ):
        op.drop_table(table)
