"""answer_template: a merchant's canned answers (DESIGN §10); notification_answer.template_code
names the template an answer used.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "answer_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("answer", JSON, nullable=False),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_answer_template"),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchant.id"], name="fk_answer_template_merchant_id_merchant"
        ),
        sa.UniqueConstraint("merchant_id", "code", name="uq_answer_template_merchant_code"),
    )
    op.create_index("ix_answer_template_merchant_type", "answer_template", ["merchant_id", "type"])
    with op.batch_alter_table("notification_answer") as batch:
        batch.add_column(sa.Column("template_code", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notification_answer") as batch:
        batch.drop_column("template_code")
    op.drop_index("ix_answer_template_merchant_type", table_name="answer_template")
    op.drop_table("answer_template")
