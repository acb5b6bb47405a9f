"""An inbound WhatsApp message: stored in its conversation once, moving the 24-hour window;
a merchant user's message handed to an AdminReplyWorkflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy

from notifyflow import csat
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
from notifyflow.inbound.common import GetClient, seen
from notifyflow.inbound.forms import InboundMessage
from notifyflow.launch import start_once
from notifyflow.models.inbound import AdminReplyInput
from notifyflow.models.vocabulary import (
    ChannelName,
    MessageRole,
)
from notifyflow.outreach import keys
from notifyflow.outreach.members import member_conversations
from notifyflow.workflows.admin_reply import AdminReplyWorkflow, admin_reply_workflow_id

log = logging.getLogger(__name__)


class MessageOutcome(StrEnum):
    customer = "customer"  # stored; the customer's window moved
    admin = "admin"  # stored; an AdminReplyWorkflow takes it from here
    duplicate = "duplicate"  # handled before: nothing done
    unknown = "unknown"  # nobody we know, or not for a merchant of ours: nothing stored


@dataclass(frozen=True)
class _Sender:
    """Who wrote: a customer in their conversation, or a merchant user in their own one."""

    conversation_id: int
    merchant_id: int
    merchant_user_id: int | None = None


async def receive_message(
    db: SessionFactory, get_client: GetClient, message: InboundMessage, *, task_queue: str
) -> MessageOutcome:
    """Store an inbound WhatsApp message once and set its handling going."""
    key = keys.inbound_message_key(message.message_sid)
    async with db() as session:
        if await seen(session, key):
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
        await start_once(
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
            id=admin_reply_workflow_id(message.message_sid),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"WhatsApp reply {message.message_sid} from merchant user "
            f"{who.merchant_user_id}",
        )
    now = utcnow()
    async with db() as session:
        session.add(InboundEvent(event_key=key, received_at=now))
        session.add(
            Message(
                conversation_id=who.conversation_id,
                role=MessageRole.user,
                content=message.body,
                other_data={
                    "kind": "inbound",
                    "channel": ChannelName.whatsapp,
                    **({"quoted_sid": message.quoted_sid} if message.quoted_sid else {}),
                    **({"profile_name": message.profile_name} if message.profile_name else {}),
                    **(
                        {"button_payload": message.button_payload} if message.button_payload else {}
                    ),
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
            rating = (
                # Stored like any message (it moved the window too); a rating as well only
                # when it answers an unrated ask of this conversation (csat.py says which).
                # Only a csat payload or a bare digit costs these statements.
                await csat.record_reply(
                    session,
                    conversation_id=who.conversation_id,
                    message_sid=message.message_sid,
                    payload=message.button_payload,
                    body=message.body,
                    at=now,
                )
                if who.merchant_user_id is None
                and csat.may_be_rating(message.button_payload, message.body)
                else None
            )
            await session.commit()
        except IntegrityError:
            # The same webhook, handled by a concurrent request a moment ago.
            await session.rollback()
            return MessageOutcome.duplicate
    if who.merchant_user_id is not None:
        return MessageOutcome.admin
    if rating is not None:
        csat.counted(rating)
    return MessageOutcome.customer


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
        if user is not None:
            return await _merchant_user_conversation(db, user)
        person = await session.scalar(
            select(ConversationUser).where(ConversationUser.phone == message.sender)
        )
        if person is None:
            return None
        conversations = list(
            (
                await session.scalars(
                    select(Conversation).where(
                        Conversation.merchant_id.in_(merchant_ids),
                        Conversation.conversation_user_id == person.id,
                        Conversation.channel == ChannelName.whatsapp,
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


async def _merchant_user_conversation(db: SessionFactory, user: MerchantUser) -> _Sender:
    """The merchant user's own WhatsApp conversation with the merchant, created if missing."""
    async with db() as session:
        merchant = await session.get(Merchant, user.merchant_id)
    language = merchant.default_language if merchant else None
    members = await member_conversations(db, user.merchant_id, language, [user])
    return _Sender(members[user.id].conversation.id, user.merchant_id, user.id)
