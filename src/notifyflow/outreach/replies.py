"""The short WhatsApp reply a merchant user gets to their own message (accepted, refused, which
notification did you mean?): free-form, since they have just written and their window is open."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from notifyflow.channels.base import Channel, OutboundText, SendError
from notifyflow.db.session import SessionFactory, ping_on_checkout
from notifyflow.db.tables import InboundEvent, Merchant, MerchantUser, Message
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, MessageRole, RecipientKind
from notifyflow.outreach import keys
from notifyflow.outreach.ledger import Sender, Target

log = logging.getLogger(__name__)


class Replies:
    """Replies to merchant users, through the ledger when they are about a notification."""

    def __init__(self, db: SessionFactory, sender: Sender, whatsapp: Channel) -> None:
        self._db = db
        self._sender = sender
        # Only for a reply about no notification, which has no ledger row to go through.
        self._whatsapp = whatsapp

    async def reply(
        self,
        notification_id: int | None,
        user: MerchantUser,
        merchant: Merchant,
        conversation_id: int,
        text: str,
        in_reply_to: str,
    ) -> None:
        """The short reply to a merchant user's WhatsApp message, free-form: they have just
        written, so their window is open. A refusal is logged; a retryable failure raised."""
        target = Target(
            conversation_id=conversation_id,
            channel=ChannelName.whatsapp,
            to=user.phone,
            sender=merchant.whatsapp_sender,
            recipient_kind=RecipientKind.merchant_user,
            merchant_user_id=user.id,
        )
        key = keys.admin_reply_key(in_reply_to)
        try:
            if notification_id is not None:
                await self._sender.send(
                    notification_id=notification_id,
                    key=key,
                    kind=DeliveryKind.admin_reply,
                    target=target,
                    text=text,
                    other_data={"in_reply_to": in_reply_to},
                )
            else:
                await self._reply_outside_ledger(target, key, text, in_reply_to)
        except SendError as err:
            if err.retryable or err.ambiguous:
                raise
            log.warning("reply to %s refused: %s", in_reply_to, err)

    async def _reply_outside_ledger(
        self, target: Target, key: str, text: str, in_reply_to: str
    ) -> None:
        """The ledger's rows belong to a notification; a reply about none (which one did you
        mean?) is sent on the channel and marked done by an inbound-event row under its key.
        A crash between the send and the mark can repeat this one short question, never an
        answer."""
        async with self._db() as session:
            if await session.scalar(select(InboundEvent.id).where(InboundEvent.event_key == key)):
                return
        result = await self._whatsapp.send_text(
            OutboundText(to=target.to, sender=target.sender, body=text, idempotency_key=key)
        )
        # Sent: the mark's connection is tested first however recently it was used (a dropped
        # one would fail the attempt, and its retry would ask again).
        with ping_on_checkout():
            await self._mark_replied(target, key, text, in_reply_to, result.provider_message_id)

    async def _mark_replied(
        self, target: Target, key: str, text: str, in_reply_to: str, provider_message_id: str
    ) -> None:
        async with self._db() as session:
            session.add(InboundEvent(event_key=key))
            session.add(
                Message(
                    conversation_id=target.conversation_id,
                    role=MessageRole.assistant,
                    content=text,
                    other_data={
                        "kind": DeliveryKind.admin_reply,
                        "delivery_key": key,
                        "in_reply_to": in_reply_to,
                        "provider_message_id": provider_message_id,
                    },
                    whatsapp_payload={"type": "text"},
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
