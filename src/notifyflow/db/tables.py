"""The data model (DESIGN §2) as SQLAlchemy 2 typed tables.

Unique constraints sit where a duplicate would be a bug: a notification's idempotency key, a
delivery's idempotency key, one accepted answer per single-answer notification, one
conversation_user per phone, one inbound webhook per provider event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from notifyflow.db.types import JSONType, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Merchant(Timestamped, Base):
    __tablename__ = "merchant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # WhatsApp sender as Twilio wants it ("whatsapp:+14155550100").
    whatsapp_sender: Mapped[str] = mapped_column(String(64), index=True)
    instagram_page_id: Mapped[str | None] = mapped_column(String(64), default=None)
    default_language: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # ISO 3166-1 alpha-2: national phone numbers of this merchant are read in this country.
    country: Mapped[str | None] = mapped_column(String(2), default=None)
    # DELETE /v1/merchants/{id}: no new notifications; the rows and history stay.
    deactivated_at: Mapped[datetime | None] = mapped_column(default=None)
    # Live outbound webhooks (kept with each subscription's create and delete): a merchant
    # with none skips the subscription read at every status change.
    webhook_subscriptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class MerchantSettings(Base):
    """A merchant's service levels (DESIGN §10); a merchant without a row uses the defaults.
    Durations are seconds; ``business_hours`` is ``{"monday": ["09:00-18:00"], …}`` in the
    merchant's timezone (NULL: the clock always runs)."""

    __tablename__ = "merchant_settings"

    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), primary_key=True)
    business_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    remind_after: Mapped[int | None] = mapped_column(Integer, default=None)
    escalate_after: Mapped[int | None] = mapped_column(Integer, default=None)
    auto_close_after: Mapped[int | None] = mapped_column(Integer, default=None)
    first_answer_target: Mapped[int | None] = mapped_column(Integer, default=None)
    csat_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MerchantUser(Timestamped, Base):
    __tablename__ = "merchant_user"
    __table_args__ = (UniqueConstraint("merchant_id", "phone", name="uq_merchant_user_phone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32))
    # admin, sales, returns, technical, … (free text so merchants can add their own).
    user_type: Mapped[str] = mapped_column(String(64), index=True)
    on_call: Mapped[bool] = mapped_column(Boolean, default=False)
    # DELETE …/users/{id}: a departed user is asked nothing more and may answer nothing more;
    # the row stays for the history (recipients, answers) that names it.
    deactivated_at: Mapped[datetime | None] = mapped_column(default=None)


class ConversationUser(Timestamped, Base):
    """A person on the other side of a conversation: a customer or a merchant user's phone."""

    __tablename__ = "conversation_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    instagram_user_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)


class Conversation(Timestamped, Base):
    __tablename__ = "conversation"
    __table_args__ = (
        UniqueConstraint(
            "merchant_id", "conversation_user_id", "channel", name="uq_conversation_person_channel"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    conversation_user_id: Mapped[int] = mapped_column(ForeignKey("conversation_user.id"))
    # Set when the other side is one of the merchant's own users (admin conversations).
    merchant_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("merchant_user.id"), default=None, index=True
    )
    channel: Mapped[str] = mapped_column(String(16), default="whatsapp")
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    # The 24-hour window is counted from here (DESIGN §2); refreshed by every inbound message.
    last_inbound_at: Mapped[datetime | None] = mapped_column(default=None)


class Message(Timestamped, Base):
    __tablename__ = "message"
    __table_args__ = (Index("ix_message_conversation_created", "conversation_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"))
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | system
    content: Mapped[str] = mapped_column(Text)
    other_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Template sends carry {"type": "template", ...} so they show in the agent's history.
    whatsapp_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    # Inbound MessageSid: a webhook delivered twice stores one message.
    provider_message_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)


class Document(Timestamped, Base):
    __tablename__ = "document"
    __table_args__ = (Index("ix_document_merchant_category", "merchant_id", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    category: Mapped[str] = mapped_column(String(64))  # UserQuestion, SupportClassification, …
    title: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Notification(Timestamped, Base):
    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_merchant_status", "merchant_id", "status"),
        Index("ix_notification_status_created", "status", "created_at"),
        # NOTIF_<n> is also the workflow id: SQLite must never hand out a deleted id again.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="requested")
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    answer_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    allow_multiple_answers: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("document.id"), default=None)
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("merchant_user.id"), default=None)
    # Localized once and kept, so a retried delivery sends the same words.
    localized_fragment: Mapped[str | None] = mapped_column(Text, default=None)
    localized_sentence: Mapped[str | None] = mapped_column(Text, default=None)
    delivery_method: Mapped[str | None] = mapped_column(String(16), default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    close_reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    # Set once the workflow is known to run (its first activity, or the sweeper). NULL on a
    # requested row older than a few seconds means its start failed: the sweeper starts it.
    workflow_started_at: Mapped[datetime | None] = mapped_column(default=None)
    # normal | urgent (DESIGN §10); when the first answer is due by the merchant's target.
    priority: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    first_answer_due_at: Mapped[datetime | None] = mapped_column(default=None)
    # {"remind_after": s, "escalate_after": s, "auto_close_after": s, "timezone": …,
    #  "business_hours": {…} | None, "first_answer_target": s | None}; None: the defaults.
    service_level: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class NotificationRecipient(Base):
    __tablename__ = "notification_recipient"
    __table_args__ = (
        UniqueConstraint(
            "notification_id", "merchant_user_id", name="uq_notification_recipient_user"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    merchant_user_id: Mapped[int] = mapped_column(ForeignKey("merchant_user.id"))
    # The merchant user's own conversation, where the instruction message is written.
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"))
    reason: Mapped[str] = mapped_column(String(16), default="initial")  # initial | escalation
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationAnswer(Base):
    """Every answer attempt, accepted or rejected, with who, how and why."""

    __tablename__ = "notification_answer"
    __table_args__ = (
        # One accepted answer per single-answer notification, enforced by the database too.
        Index(
            "uq_notification_answer_one_accepted",
            "notification_id",
            unique=True,
            postgresql_where=text("accepted AND single_answer"),
            sqlite_where=text("accepted AND single_answer"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("merchant_user.id"), default=None)
    source: Mapped[str] = mapped_column(String(16))
    answer_text: Mapped[str] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean)
    single_answer: Mapped[bool] = mapped_column(Boolean, default=True)
    reason_code: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it was written down: after created_at for an accepted answer (written with its
    # sends) and a refusal the workflow made. The live event stream's order (migration 0016;
    # NULL for rows written before it: their created_at).
    recorded_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # The answer template (canned answer) the answer named, by its code: the stored answer is
    # the template's answer as it was at use.
    template_code: Mapped[str | None] = mapped_column(String(32), default=None)


class AnswerTemplate(Base):
    """A merchant's canned answer (DESIGN §10): ``#hours`` on WhatsApp, ``{"template":
    "hours"}`` in the answer route. A code names one template per merchant; the template
    answers one notification type, and its answer was valid for that type's schema when
    stored (it is validated again at use, against the notification's own schema)."""

    __tablename__ = "answer_template"
    __table_args__ = (
        UniqueConstraint("merchant_id", "code", name="uq_answer_template_merchant_code"),
        # The instruction message's quick answers: a merchant's codes for one type.
        Index("ix_answer_template_merchant_type", "merchant_id", "type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    code: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(64))
    answer: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Accepted answers that used it: the instruction message lists the most used first.
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class AnswerVersion(Base):
    """Every version of a delivered notification's answer (DESIGN §10 corrections): version 1
    is the first answer (written when the first correction comes), each correction the next.
    For a question, ``content`` is its Document's content at that version, and the Document's
    current content is the latest version's. ``correction_key`` (the client's
    ``correction_id``, else a digest of who and what) makes a client's retry the same
    correction; the unique version number makes two concurrent corrections two versions."""

    __tablename__ = "answer_version"
    __table_args__ = (
        UniqueConstraint("notification_id", "version", name="uq_answer_version_number"),
        UniqueConstraint(
            "notification_id", "correction_key", name="uq_answer_version_correction_key"
        ),
        # The corrections' sweep: pending versions past the grace (few rows; each tick).
        Index(
            "ix_answer_version_pending_created",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"))
    version: Mapped[int] = mapped_column(Integer)
    # NULL for a support request: only a question has a Document.
    document_id: Mapped[int | None] = mapped_column(
        ForeignKey("document.id"), default=None, index=True
    )
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("merchant_user.id"), default=None)
    source: Mapped[str] = mapped_column(String(16))
    # The whole answer as JSON (resolution notes included: they stay in the database).
    answer_text: Mapped[str] = mapped_column(Text)
    # The customer-facing field's text.
    content: Mapped[str] = mapped_column(Text, default="")
    correction_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # Localized once and kept, so a retried send sends the same words.
    localized_fragment: Mapped[str | None] = mapped_column(Text, default=None)
    localized_sentence: Mapped[str | None] = mapped_column(Text, default=None)
    # pending → sent | failed for a correction; version 1 is the delivered answer (sent).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    delivery_method: Mapped[str | None] = mapped_column(String(16), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    failure_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class Delivery(Base):
    """The ledger of outbound sends. The idempotency key (notification, step, recipient) means a
    retried activity finds the row of an accepted send and does not message a person twice."""

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # request | reminder | escalation | answer | closure | expiry | closed
    kind: Mapped[str] = mapped_column(String(32))
    recipient_kind: Mapped[str] = mapped_column(String(16))  # customer | merchant_user
    merchant_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("merchant_user.id"), default=None
    )
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"))
    method: Mapped[str] = mapped_column(String(16))  # campaign | direct
    channel: Mapped[str] = mapped_column(String(16))  # whatsapp | instagram | console
    to_address: Mapped[str] = mapped_column(String(64))
    campaign: Mapped[str | None] = mapped_column(String(64), default=None)
    body: Mapped[str] = mapped_column(Text, default="")
    # pending → sent (accepted by the provider) → delivered | read | failed | undelivered
    status: Mapped[str] = mapped_column(String(16), default="pending")
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    error_code: Mapped[str | None] = mapped_column(String(16), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CampaignTemplate(Timestamped, Base):
    __tablename__ = "campaign_template"
    __table_args__ = (
        UniqueConstraint(
            "campaign", "language", "merchant_scope", name="uq_campaign_template_scope"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    # 0 is the product default; otherwise a merchant's own template. (Not NULL, so the unique
    # constraint holds on PostgreSQL, where NULLs never collide.)
    merchant_scope: Mapped[int] = mapped_column(Integer, default=0)
    content_sid: Mapped[str] = mapped_column(String(34))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CsatResponse(Base):
    """The customer's satisfaction with an answer (DESIGN §10): asked once per notification
    (the primary key), rated at most once (the first rating wins: later ones stay ordinary
    messages of the conversation)."""

    __tablename__ = "csat_response"
    __table_args__ = (
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 5)", name="score_range"),
        # A bare digit is matched to the conversation's latest ask of the last day.
        Index("ix_csat_response_conversation_asked", "conversation_id", "asked_at"),
    )

    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id"))
    # quick_reply (inside the 24 h window) | template (outside it)
    method: Mapped[str] = mapped_column(String(16))
    asked_at: Mapped[datetime] = mapped_column(default=utcnow)
    score: Mapped[int | None] = mapped_column(Integer, default=None)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)
    # The inbound MessageSid that carried the rating.
    answer_message_sid: Mapped[str | None] = mapped_column(String(64), default=None)


class ApiKey(Base):
    """A merchant API key (DESIGN §9): it opens that merchant's data and nothing else.

    Only a SHA-256 of the key is kept; ``prefix`` is its short public part, unique and indexed,
    so a request finds its key with one index look-up. Revoking sets ``revoked_at`` (the row
    stays, for the listing and the audit trail).
    """

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written at most once a minute per key, never on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookSubscription(Base):
    """A merchant's outbound webhook (DESIGN §8): events are POSTed to ``url``, signed with
    ``secret`` per the Standard Webhooks specification. Deleting keeps the row (its events'
    history) and stops deliveries."""

    __tablename__ = "webhook_subscription"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchant.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The signing secret (whsec_…): symmetric, so it is kept to sign with; shown once.
    secret: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(default=None)
    # Events given up on after 24 h of failed attempts.
    failed_events: Mapped[int] = mapped_column(Integer, default=0)


class WebhookEvent(Base):
    """One event for one subscription: the outbox row a WebhookDeliveryWorkflow delivers.
    ``webhook-id`` is ``evt_<id>`` on every attempt; the body is fixed at its first attempt."""

    __tablename__ = "webhook_event"
    __table_args__ = (Index("ix_webhook_event_undispatched", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id"))
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"))
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str | None] = mapped_column(Text, default=None)
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class InboundEvent(Base):
    """Webhooks already handled, keyed by provider event (Twilio retries once by default)."""

    __tablename__ = "inbound_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(128), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
