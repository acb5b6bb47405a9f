"""The customer a notification is about, as outreach reaches them: the merchant (its senders),
the customer's conversation (channel, language, 24 h window) and the customer (phone or IGSID)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.tables import Conversation, ConversationUser, Merchant, Notification


@dataclass(frozen=True)
class CustomerContact:
    merchant: Merchant
    conversation: Conversation
    customer: ConversationUser

    @property
    def language(self) -> str:
        """The conversation's language, else the merchant's default."""
        return self.conversation.language or self.merchant.default_language


async def load_contact(session: AsyncSession, notification: Notification) -> CustomerContact:
    """The notification's customer contact (its rows exist: foreign keys)."""
    merchant = await session.get(Merchant, notification.merchant_id)
    assert merchant is not None
    conversation = await session.get(Conversation, notification.conversation_id)
    assert conversation is not None
    customer = await session.get(ConversationUser, conversation.conversation_user_id)
    assert customer is not None
    return CustomerContact(merchant, conversation, customer)
