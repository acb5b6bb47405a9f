"""Each merchant user's own WhatsApp conversation with their merchant, created when missing.

The one get-or-create: the lifecycle's fan-out and the inbound webhook (a merchant user writing
before anyone wrote to them) both come here, so two of them racing meet on the unique keys and
the loser reads the winner's rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVarTuple

from sqlalchemy import Select, and_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Conversation, ConversationUser, Delivery, MerchantUser
from notifyflow.models.vocabulary import ChannelName, DeliveryKind

# A race loses at most once per row it creates (person, then conversation): a third integrity
# error is a bug, not a race, and is raised.
ATTEMPTS = 3


Ts = TypeVarTuple("Ts")


def join_own_conversation(stmt: Select[*Ts]) -> Select[*Ts]:
    """``stmt`` (which selects MerchantUser) outer-joined to each user's own WhatsApp
    conversation: the one :func:`member_conversations` finds, by the user's phone."""
    return stmt.outerjoin(ConversationUser, ConversationUser.phone == MerchantUser.phone).outerjoin(
        Conversation,
        and_(
            Conversation.conversation_user_id == ConversationUser.id,
            Conversation.merchant_id == MerchantUser.merchant_id,
            Conversation.channel == ChannelName.whatsapp.value,
        ),
    )


@dataclass(frozen=True)
class Roster:
    """A merchant's active users, and the members among them whose conversation exists."""

    users: list[MerchantUser]
    known: dict[int, Member]

    @classmethod
    def of(cls, rows: Sequence[tuple[MerchantUser | None, Conversation | None]]) -> Roster:
        users: dict[int, MerchantUser] = {}
        known: dict[int, Member] = {}
        for user, conversation in rows:
            if user is None:
                continue
            users.setdefault(user.id, user)
            if conversation is not None and user.id not in known:
                known[user.id] = Member(user, conversation)
        return cls(list(users.values()), known)


def is_active_user_of(merchant_id: Any) -> ColumnElement[bool]:
    """The merchant's active users: a departed (deactivated) one is told nothing more.
    ``merchant_id``: a value, or a column to join on."""
    return and_(MerchantUser.merchant_id == merchant_id, MerchantUser.deactivated_at.is_(None))


async def merchant_users(db: SessionFactory, merchant_id: int) -> list[MerchantUser]:
    """Every active user of a merchant."""
    async with db() as session:
        return list(
            (
                await session.scalars(select(MerchantUser).where(is_active_user_of(merchant_id)))
            ).all()
        )


# What a status callback says of a message that never reached its person.
NOT_DELIVERED = ("failed", "undelivered")


async def users_asked(db: SessionFactory, notification_id: int) -> set[int]:
    """The merchant users whose request for the notification the provider accepted (the
    ledger has its message id) and has not reported as failed."""
    async with db() as session:
        rows = await session.scalars(
            select(Delivery.merchant_user_id).where(
                Delivery.notification_id == notification_id,
                Delivery.kind == DeliveryKind.request.value,
                Delivery.merchant_user_id.is_not(None),
                Delivery.provider_message_id.is_not(None),
                Delivery.status.not_in(NOT_DELIVERED),
            )
        )
        return {int(user_id) for user_id in rows if user_id is not None}


@dataclass(frozen=True)
class Member:
    """A merchant user and the conversation messages to them are recorded in."""

    user: MerchantUser
    conversation: Conversation


async def member_conversations(
    db: SessionFactory, merchant_id: int, language: str | None, users: list[MerchantUser]
) -> dict[int, Member]:
    """Each user's own conversation (with its ConversationUser: one per phone), by user id.
    ``language``: that of a conversation created now (the merchant's default)."""
    if not users:
        return {}
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await _get_or_create(db, merchant_id, language, users)
        except IntegrityError:
            # Another attempt or webhook created some of them at the same moment: read theirs.
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _get_or_create(
    db: SessionFactory, merchant_id: int, language: str | None, users: list[MerchantUser]
) -> dict[int, Member]:
    phones = {u.phone for u in users}
    async with db() as session:
        people = {
            p.phone: p
            for p in (
                await session.scalars(
                    select(ConversationUser).where(ConversationUser.phone.in_(phones))
                )
            ).all()
        }
        for phone in phones - set(people):
            person = ConversationUser(phone=phone)
            session.add(person)
            people[phone] = person
        await session.flush()
        convs = {
            c.conversation_user_id: c
            for c in (
                await session.scalars(
                    select(Conversation).where(
                        Conversation.merchant_id == merchant_id,
                        Conversation.channel == ChannelName.whatsapp,
                        Conversation.conversation_user_id.in_([p.id for p in people.values()]),
                    )
                )
            ).all()
        }
        out: dict[int, Member] = {}
        for user in users:
            person = people[user.phone]
            conv = convs.get(person.id)
            if conv is None:
                conv = Conversation(
                    merchant_id=merchant_id,
                    conversation_user_id=person.id,
                    merchant_user_id=user.id,
                    channel=ChannelName.whatsapp,
                    language=language,
                )
                session.add(conv)
                convs[person.id] = conv
            out[user.id] = Member(user, conv)
        await session.commit()
        return out
