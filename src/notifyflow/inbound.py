"""Inbound Twilio webhooks: WhatsApp messages and message status callbacks.

The routes in :mod:`notifyflow.api.webhook_routes` check the signature and hand the form here.
Everything answers Twilio within milliseconds; slow work runs in Temporal:

- **A customer's message** is stored in their conversation (role ``user``, the ``MessageSid`` as
  its provider id) and moves the conversation's ``last_inbound_at`` forward, which is what the
  24-hour rule reads when an answer is sent.
- **A merchant user's message** is stored in their own conversation (refreshing their own
  window) and handed to an :class:`~notifyflow.workflows.admin_reply.AdminReplyWorkflow`, which
  works out whether it answers a notification, submits it and replies to them.
- **A status callback** moves the delivery row forward (never backward). A customer answer that
  failed with 63016 starts the template fallback; any other failure of it marks the
  notification ``delivery_failed`` (both in
  :class:`~notifyflow.workflows.fallback.FallbackDeliveryWorkflow`).

Each webhook is handled once: an ``InboundEvent`` row per ``MessageSid`` (per ``MessageSid`` and
status for callbacks) is written in the same transaction as its effect, and any workflow is
started *before* that commit with an id derived from the event, so a crash in between is
repaired by Twilio's retry, and a webhook delivered twice starts nothing new.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Conversation,
    ConversationUser,
    Delivery,
    InboundEvent,
    Merchant,
    MerchantUser,
    Message,
)
from notifyflow.db.types import utcnow
from notifyflow.models.directory import normalize_phone
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import format_notification_id
from notifyflow.models.inbound import AdminReplyInput, FallbackAction, FallbackInput
from notifyflow.workflows.admin_reply import AdminReplyWorkflow, admin_reply_workflow_id
from notifyflow.workflows.fallback import FallbackDeliveryWorkflow, fallback_workflow_id

log = logging.getLogger(__name__)

GetClient = Callable[[], Awaitable[Client]]

# A status callback can overtake the write of the provider id it refers to (Twilio answers the
# send, then calls back within milliseconds): wait this long for the row to show up.
STATUS_MATCH_WAIT = 3.0
STATUS_MATCH_POLL = 0.1
# A send claimed in the ledger this recently and not yet recorded may be the one called back.
IN_FLIGHT = timedelta(minutes=1)

# Twilio's message statuses in the order they happen; a callback never moves a row backward.
# A failure outranks "sent" (it happened after) but not "delivered" or "read".
STATUS_RANK: dict[str, int] = {
    "pending": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 1,
    "sent": 2,
    "failed": 3,
    "undelivered": 3,
    "delivered": 4,
    "read": 5,
}
FAILED = frozenset({"failed", "undelivered"})
WINDOW_CLOSED_CODES = frozenset({"63016", "131047"})

# Why a message failed, for the notification's failure reason and the admin's notice.
TWILIO_ERRORS: dict[str, str] = {
    "63016": "the customer's 24-hour WhatsApp window had closed",
    "63005": "WhatsApp refused the message, or the number is not a WhatsApp user",
    "63014": "the customer blocked the business or opted out",
    "63013": "WhatsApp's channel policy refused a template variable",
    "63021": "the template with its variables is too long",
    "63028": "the template's variable count does not match",
    "63024": "the recipient is not a valid WhatsApp user",
    "63003": "the recipient's number is not reachable on WhatsApp",
    "30003": "the customer's phone is unreachable",
    "30005": "the customer's number is unknown",
    "30006": "the customer's number cannot receive the message",
    "30007": "the message was filtered by the carrier",
    "30008": "an unknown delivery error",
}

_SID = re.compile(r"^[A-Za-z]{2}[A-Za-z0-9]{1,62}$")
_MAX_BODY = 20_000


class WebhookInputError(NotificationError):
    """A signed webhook without the fields it needs (422)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(
            RefusalCode.invalid_input,
            message,
            details=[{"in": "body", "path": f"/{field}", "message": message}],
        )


def twilio_reason(code: str | None, status: str = "failed") -> str:
    """``63014: the customer blocked the business or opted out`` — for people to read."""
    if not code:
        return f"Twilio reported the message {status}"
    return f"{code}: {TWILIO_ERRORS.get(code, f'Twilio error {code}')}"


def _address(value: str | None) -> str | None:
    """``whatsapp:+1555…`` → ``+1555…``; None when it is no phone number."""
    if not value:
        return None
    try:
        return normalize_phone(value)
    except ValueError:
        return None


def _sid(form: Mapping[str, str], field: str, *, required: bool = True) -> str | None:
    value = (form.get(field) or "").strip()
    if not value:
        if required:
            raise WebhookInputError(f"{field} is required", field)
        return None
    if not _SID.match(value):
        raise WebhookInputError(f"{field} is not a Twilio SID", field)
    return value


@dataclass(frozen=True)
class InboundMessage:
    """The fields of Twilio's inbound-message webhook that matter here."""

    message_sid: str
    sender: str | None  # From, as E.164 (None: not a phone number)
    to: str | None  # To: the merchant's WhatsApp number, as E.164
    body: str
    quoted_sid: str | None = None  # OriginalRepliedMessageSid
    profile_name: str | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> InboundMessage:
        sid = _sid(form, "MessageSid")
        assert sid is not None
        body = (form.get("Body") or "").replace("\x00", "")[:_MAX_BODY]
        try:
            quoted = _sid(form, "OriginalRepliedMessageSid", required=False)
        except WebhookInputError:
            quoted = None
        profile = (form.get("ProfileName") or "").replace("\x00", "").strip()[:200] or None
        return cls(
            message_sid=sid,
            sender=_address(form.get("From")),
            to=_address(form.get("To")),
            body=body,
            quoted_sid=quoted,
            profile_name=profile,
        )


@dataclass(frozen=True)
class StatusCallback:
    """The fields of Twilio's message status callback that matter here."""

    message_sid: str
    status: str
    error_code: str | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> StatusCallback:
        sid = _sid(form, "MessageSid")
        assert sid is not None
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        if not status:
            raise WebhookInputError("MessageStatus is required", "MessageStatus")
        if len(status) > 16 or not status.isalpha():
            raise WebhookInputError("MessageStatus is not a message status", "MessageStatus")
        code = (form.get("ErrorCode") or "").strip()
        if code and (len(code) > 16 or not code.isdigit()):
            raise WebhookInputError("ErrorCode is not a number", "ErrorCode")
        return cls(message_sid=sid, status=status, error_code=code or None)


class MessageOutcome(StrEnum):
    customer = "customer"  # stored; the customer's window moved
    admin = "admin"  # stored; an AdminReplyWorkflow takes it from here
    duplicate = "duplicate"  # handled before: nothing done
    unknown = "unknown"  # nobody we know, or not for a merchant of ours: nothing stored


class StatusOutcome(StrEnum):
    updated = "updated"
    duplicate = "duplicate"
    unknown = "unknown"  # no delivery with that MessageSid (not one of our sends)
    ignored = "ignored"  # a status we do not track


@dataclass(frozen=True)
class _Sender:
    """Who wrote: a customer in their conversation, or a merchant user in their own one."""

    conversation_id: int
    merchant_id: int
    merchant_user_id: int | None = None


# ---- messages -------------------------------------------------------------------------------


def message_event_key(message_sid: str) -> str:
    return f"twilio:message:{message_sid}"


def status_event_key(message_sid: str, status: str) -> str:
    return f"twilio:status:{message_sid}:{status}"


async def receive_message(
    db: SessionFactory, get_client: GetClient, message: InboundMessage, *, task_queue: str
) -> MessageOutcome:
    """Store an inbound WhatsApp message once and set its handling going."""
    key = message_event_key(message.message_sid)
    async with db() as session:
        if await _seen(session, key):
            return MessageOutcome.duplicate
    who = await _identify(db, message)
    if who is None:
        log.info(
            "inbound %s from an unknown sender or to an unknown number: ignored",
            message.message_sid,
        )
        return MessageOutcome.unknown
    if who.merchant_user_id is not None and message.body.strip():
        # Started before the message is recorded: if the commit below never happens, Twilio's
        # retry comes back here and finds this same workflow.
        client = await get_client()
        await _start(
            client,
            AdminReplyWorkflow.run,
            AdminReplyInput(
                message_sid=message.message_sid,
                merchant_id=who.merchant_id,
                merchant_user_id=who.merchant_user_id,
                conversation_id=who.conversation_id,
                text=message.body,
                quoted_sid=message.quoted_sid,
            ),
            workflow_id=admin_reply_workflow_id(message.message_sid),
            task_queue=task_queue,
            summary=f"WhatsApp reply {message.message_sid} from merchant user "
            f"{who.merchant_user_id}",
        )
    now = utcnow()
    async with db() as session:
        session.add(InboundEvent(event_key=key, received_at=now))
        session.add(
            Message(
                conversation_id=who.conversation_id,
                role="user",
                content=message.body,
                other_data={
                    "kind": "inbound",
                    "channel": "whatsapp",
                    **({"quoted_sid": message.quoted_sid} if message.quoted_sid else {}),
                    **({"profile_name": message.profile_name} if message.profile_name else {}),
                },
                provider_message_id=message.message_sid,
                created_at=now,
            )
        )
        try:
            # A conditional UPDATE: two messages arriving together never move the window back.
            await session.execute(
                update(Conversation)
                .where(
                    Conversation.id == who.conversation_id,
                    or_(
                        Conversation.last_inbound_at.is_(None),
                        Conversation.last_inbound_at < now,
                    ),
                )
                .values(last_inbound_at=now)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        except IntegrityError:
            # The same webhook, handled by a concurrent request a moment ago.
            await session.rollback()
            return MessageOutcome.duplicate
    if who.merchant_user_id is not None:
        return MessageOutcome.admin
    return MessageOutcome.customer


async def _seen(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(InboundEvent.id).where(InboundEvent.event_key == key))
    return found is not None


async def _identify(db: SessionFactory, message: InboundMessage) -> _Sender | None:
    """The conversation a message belongs to.

    The merchant is the one whose WhatsApp sender the message was sent to. A phone that is one
    of that merchant's users writes in their own conversation (created when missing); anyone
    else must already have a conversation with the merchant. When several merchants share one
    number (a Messaging Service), the quoted message decides, else the latest activity."""
    if message.sender is None or message.to is None:
        return None
    async with db() as session:
        merchant_ids = list(
            (
                await session.scalars(
                    select(Merchant.id).where(
                        Merchant.whatsapp_sender.in_([f"whatsapp:{message.to}", message.to])
                    )
                )
            ).all()
        )
        if not merchant_ids:
            return None
        quoted = (
            await session.scalar(
                select(Delivery).where(Delivery.provider_message_id == message.quoted_sid).limit(1)
            )
            if message.quoted_sid
            else None
        )
        users = list(
            (
                await session.scalars(
                    select(MerchantUser)
                    .where(
                        MerchantUser.merchant_id.in_(merchant_ids),
                        MerchantUser.phone == message.sender,
                    )
                    .order_by(MerchantUser.id)
                )
            ).all()
        )
        # A departed (deactivated) user's reply is a stranger's: it answers nothing, neither
        # as that user nor through that user's own conversation below.
        departed = {u.id for u in users if u.deactivated_at is not None}
        users = [u for u in users if u.deactivated_at is None]
        user = await _pick_user(session, users, quoted) if users else None
        person = await session.scalar(
            select(ConversationUser).where(ConversationUser.phone == message.sender)
        )
        if user is not None:
            return await _merchant_user_conversation(db, user, person)
        if person is None:
            return None
        conversations = list(
            (
                await session.scalars(
                    select(Conversation).where(
                        Conversation.merchant_id.in_(merchant_ids),
                        Conversation.conversation_user_id == person.id,
                        Conversation.channel == "whatsapp",
                    )
                )
            ).all()
        )
        conversations = [c for c in conversations if c.merchant_user_id not in departed]
        if not conversations:
            return None
        conversation = conversations[0]
        if len(conversations) > 1:
            conversation = await _latest(session, conversations, quoted)
        if person.name is None and message.profile_name:
            person.name = message.profile_name
            await session.commit()
        return _Sender(conversation.id, conversation.merchant_id, conversation.merchant_user_id)


async def _pick_user(
    session: AsyncSession, users: list[MerchantUser], quoted: Delivery | None
) -> MerchantUser:
    """One phone, several merchants on one number: the one quoted, else last messaged."""
    if len(users) == 1:
        return users[0]
    by_id = {u.id: u for u in users}
    if quoted is not None and quoted.merchant_user_id in by_id:
        return by_id[quoted.merchant_user_id]
    last = await session.scalar(
        select(Delivery.merchant_user_id)
        .where(Delivery.merchant_user_id.in_(list(by_id)))
        .order_by(Delivery.id.desc())
        .limit(1)
    )
    return by_id.get(last or -1, users[0])


async def _latest(
    session: AsyncSession, conversations: list[Conversation], quoted: Delivery | None
) -> Conversation:
    by_id = {c.id: c for c in conversations}
    if quoted is not None and quoted.conversation_id in by_id:
        return by_id[quoted.conversation_id]
    last = await session.scalar(
        select(Message.conversation_id)
        .where(Message.conversation_id.in_(list(by_id)))
        .order_by(Message.id.desc())
        .limit(1)
    )
    return by_id.get(last or -1, max(conversations, key=lambda c: c.id))


async def _merchant_user_conversation(
    db: SessionFactory, user: MerchantUser, person: ConversationUser | None, *, again: bool = True
) -> _Sender:
    """The merchant user's own WhatsApp conversation with the merchant, created if missing."""
    async with db() as session:
        if person is None:
            person = ConversationUser(phone=user.phone)
            session.add(person)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()
                person = await session.scalar(
                    select(ConversationUser).where(ConversationUser.phone == user.phone)
                )
                assert person is not None
        conversation = await session.scalar(
            select(Conversation).where(
                Conversation.merchant_id == user.merchant_id,
                Conversation.conversation_user_id == person.id,
                Conversation.channel == "whatsapp",
            )
        )
        if conversation is None:
            merchant = await session.get(Merchant, user.merchant_id)
            conversation = Conversation(
                merchant_id=user.merchant_id,
                conversation_user_id=person.id,
                merchant_user_id=user.id,
                channel="whatsapp",
                language=merchant.default_language if merchant else None,
            )
            session.add(conversation)
        try:
            await session.commit()
        except IntegrityError:
            # Created at the same moment by the lifecycle's fan-out or another webhook.
            await session.rollback()
            if not again:
                raise
            return await _merchant_user_conversation(db, user, None, again=False)
        return _Sender(conversation.id, user.merchant_id, user.id)


# ---- status callbacks -----------------------------------------------------------------------


async def receive_status(
    db: SessionFactory,
    get_client: GetClient,
    callback: StatusCallback,
    *,
    task_queue: str,
    wait: float | None = None,
) -> StatusOutcome:
    """Apply a status callback to its delivery row once; a failed customer answer starts the
    fallback (63016) or the failure handling (anything else)."""
    if callback.status not in STATUS_RANK:
        return StatusOutcome.ignored
    key = status_event_key(callback.message_sid, callback.status)
    async with db() as session:
        if await _seen(session, key):
            return StatusOutcome.duplicate
    delivery = await _delivery_for(
        db, callback.message_sid, STATUS_MATCH_WAIT if wait is None else wait
    )
    if delivery is None:
        log.info("status %s for unknown message %s", callback.status, callback.message_sid)
        return StatusOutcome.unknown
    failed = callback.status in FAILED
    reason = twilio_reason(callback.error_code, callback.status) if failed else None
    action = _action_for(delivery, callback)
    if action is not None:
        client = await get_client()
        await _start(
            client,
            FallbackDeliveryWorkflow.run,
            FallbackInput(
                notification_id=delivery.notification_id,
                action=action,
                provider_message_id=callback.message_sid,
                error_code=callback.error_code,
                reason=reason,
            ),
            workflow_id=fallback_workflow_id(delivery.notification_id, action),
            task_queue=task_queue,
            summary=f"{format_notification_id(delivery.notification_id)} · answer "
            f"{callback.status} ({callback.error_code or 'no code'}) · {action.value}",
        )
    rank = STATUS_RANK[callback.status]
    lower = [status for status, r in STATUS_RANK.items() if r < rank]
    values: dict[str, Any] = {"status": callback.status, "updated_at": utcnow()}
    if failed:
        values["error_code"] = callback.error_code or callback.status
        values["error_message"] = reason
    async with db() as session:
        session.add(InboundEvent(event_key=key))
        try:
            # Conditional: callbacks arriving out of order or together never move it backward.
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.status.in_(lower))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return StatusOutcome.duplicate
    return StatusOutcome.updated


def _action_for(delivery: Delivery, callback: StatusCallback) -> FallbackAction | None:
    """Only the customer's answer has a fallback; other sends just record their status."""
    if callback.status not in FAILED:
        return None
    if (delivery.recipient_kind, delivery.kind, delivery.channel) != (
        "customer",
        "answer",
        "whatsapp",
    ):
        return None
    if callback.error_code in WINDOW_CLOSED_CODES and delivery.method == "direct":
        return FallbackAction.template
    return FallbackAction.fail


async def _delivery_for(db: SessionFactory, message_sid: str, wait: float) -> Delivery | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        async with db() as session:
            row = await session.scalar(
                select(Delivery)
                .where(Delivery.provider_message_id == message_sid)
                .order_by(Delivery.id)
                .limit(1)
            )
        if row is not None or loop.time() >= deadline:
            return row
        # Only worth waiting for if one of our sends is still between accept and record.
        async with db() as session:
            in_flight = await session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.provider_message_id.is_(None),
                    Delivery.status == "pending",
                    Delivery.updated_at >= utcnow() - IN_FLIGHT,
                )
            )
        if not in_flight:
            return None
        await asyncio.sleep(STATUS_MATCH_POLL)


async def _start(
    client: Client,
    run: Any,
    input: Any,
    *,
    workflow_id: str,
    task_queue: str,
    summary: str,
) -> None:
    """Start once: a running one is joined, a finished one is not started again."""
    try:
        await client.start_workflow(
            run,
            input,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass
