"""A request before its workflow: the type and context checked (nothing durable happens for a
bad one), then the notification (and a question's Document) recorded in one transaction."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from notifyflow import service_levels
from notifyflow.config import Settings, get_settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Conversation,
    ConversationUser,
    Document,
    Merchant,
    MerchantSettings,
    MerchantUser,
    Notification,
)
from notifyflow.db.types import utcnow
from notifyflow.launch import admin_ids, is_admin_of
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import NOTIFICATION_CONFIG, NotificationStatus, NotificationType
from notifyflow.models.text import unstorable
from notifyflow.models.workflow_io import Priority
from notifyflow.webhooks import events as webhook_events

MAX_CONTEXT_BYTES = 32_000
MAX_FIELD_CHARS = 4_000


def check_request(type: str, context: Any) -> tuple[NotificationType, dict[str, Any]]:
    try:
        kind = NotificationType(type)
    except ValueError:
        known = ", ".join(t.value for t in NotificationType)
        raise NotificationError(
            RefusalCode.unknown_type, f"unknown notification type {type!r}; known: {known}"
        ) from None
    if not isinstance(context, dict):
        raise NotificationError(RefusalCode.invalid_input, "context must be a JSON object")
    found = unstorable(context, "/context")
    if found:
        raise NotificationError(
            RefusalCode.invalid_input,
            f"context cannot be stored: {found[0]['path']}: {found[0]['message']}",
            details=found,
        )
    if len(json.dumps(context, default=str)) > MAX_CONTEXT_BYTES:
        raise NotificationError(RefusalCode.invalid_input, "context is too large")
    cfg = NOTIFICATION_CONFIG[kind]
    missing = [
        f
        for f in cfg.requested_fields
        if not isinstance(context.get(f), str) or not str(context.get(f)).strip()
    ]
    if missing:
        raise NotificationError(
            RefusalCode.missing_field,
            f"context lacks required field(s) for {kind.value}: {', '.join(missing)}",
            details=[
                {"path": f"/context/{f}", "message": "required non-empty string"} for f in missing
            ],
        )
    for f in cfg.requested_fields:
        if len(context[f]) > MAX_FIELD_CHARS:
            raise NotificationError(
                RefusalCode.invalid_input,
                f"context field {f!r} is longer than {MAX_FIELD_CHARS} characters",
                details=[{"path": f"/context/{f}", "message": "too long"}],
            )
    clean = dict(context)
    for f in cfg.requested_fields:
        clean[f] = context[f].strip()
    return kind, clean


@functools.cache
def _request_load() -> Any:
    """:func:`record_request`'s one read, built once (the conversation a bound parameter):
    building the joined construct and its cache key per request cost more CPU than running
    it."""
    return (
        select(
            Conversation,
            ConversationUser.phone,
            Merchant,
            MerchantSettings,
            MerchantUser.id,
        )
        .join(ConversationUser, ConversationUser.id == Conversation.conversation_user_id)
        .join(Merchant, Merchant.id == Conversation.merchant_id)
        .outerjoin(MerchantSettings, MerchantSettings.merchant_id == Conversation.merchant_id)
        .outerjoin(MerchantUser, is_admin_of(Conversation.merchant_id))
        .where(Conversation.id == bindparam("conversation_id"))
        .order_by(MerchantUser.id)
    )


async def record_request(
    db: SessionFactory,
    kind: NotificationType,
    context: dict[str, Any],
    conversation_id: int,
    idempotency_key: str | None,
    *,
    priority: Priority = Priority.normal,
    settings: Settings | None = None,
) -> tuple[Notification, list[int], bool]:
    """Write the notification (and a question's Document) in one transaction; with an
    ``idempotency_key`` seen before, return that notification instead. Returns the row, the
    merchant's admin ids and True when new."""
    if idempotency_key is not None and not (0 < len(idempotency_key) <= 200):
        raise NotificationError(
            RefusalCode.invalid_input, "idempotency_key must be 1 to 200 characters"
        )
    cfg = NOTIFICATION_CONFIG[kind]
    async with db() as session:

        async def earlier() -> tuple[Notification, list[int], bool] | None:
            """The notification this idempotency key recorded before, if any. Looked up only
            when this request cannot be recorded as new (a refusal, or the key's unique index
            refusing the insert): a first request, the common case, pays no read for it."""
            if not idempotency_key:
                return None
            existing = await session.scalar(
                select(Notification).where(Notification.idempotency_key == idempotency_key)
            )
            if existing is None:
                return None
            return existing, await admin_ids(session, existing.merchant_id), False

        # One read for everything the row needs: the conversation, its customer's phone, the
        # merchant's timezone and webhook count, its service levels and its active admins
        # (one row per admin).
        found = (await session.execute(_request_load(), {"conversation_id": conversation_id})).all()
        if not found or found[0][0].merchant_user_id is not None:
            if (replay := await earlier()) is not None:
                return replay
            raise NotificationError(
                RefusalCode.not_found, f"conversation {conversation_id} not found"
            )
        conversation, phone, merchant, merchant_settings = found[0][:4]
        admins = [row[4] for row in found if row[4] is not None]
        if not admins:
            if (replay := await earlier()) is not None:
                return replay
            raise NotificationError(
                RefusalCode.invalid_input,
                f"merchant {conversation.merchant_id} has no admin who could answer",
            )
        context["lead_phone"] = phone
        service = service_levels.snapshot(
            merchant_settings,
            merchant.timezone,
            settings or get_settings(),
            {
                "remind_after": cfg.remind_after,
                "escalate_after": cfg.escalate_after,
                "auto_close_after": cfg.auto_close_after,
            },
            urgent=priority is Priority.urgent,
        )
        now = utcnow()
        notification = Notification(
            priority=priority.value,
            service_level=service,
            first_answer_due_at=service_levels.due_at(service, now, service["sla_target"]),
            created_at=now,
            type=kind.value,
            status=NotificationStatus.requested.value,
            merchant_id=conversation.merchant_id,
            conversation_id=conversation.id,
            context=context,
            answer_schema=cfg.answer_json_schema(),
            allow_multiple_answers=cfg.allow_multiple_answers,
            idempotency_key=idempotency_key,
        )
        if kind is NotificationType.user_question_request:
            # The question joins the knowledge base now; the answer fills it in later.
            document = Document(
                merchant_id=conversation.merchant_id,
                category="UserQuestion",
                title=context["question"],
                content="",
            )
            session.add(document)
            await session.flush()
            notification.document_id = document.id
            notification.context = {**context, "document_id": document.id}
        session.add(notification)
        try:
            await session.flush()
            await webhook_events.enqueue(
                session,
                notification_id=notification.id,
                merchant_id=notification.merchant_id,
                event=webhook_events.EventType.requested,
                subscriptions=merchant.webhook_subscriptions,
            )
            await session.commit()
        except IntegrityError:
            # This idempotency key was recorded before (a client's retry, or the same key
            # racing in from another request): return that one.
            await session.rollback()
            if (replay := await earlier()) is None:
                raise
            return replay
        return notification, admins, True
