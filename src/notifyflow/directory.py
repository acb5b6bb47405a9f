"""The directory: merchants, their users and documents, conversations, messages and campaign
templates. Async functions over a session factory; the HTTP API and the CLI are thin layers.

Every function runs in one transaction, so a refusal leaves no half-written rows, and turns
the database's own refusals (unique constraints) into ``NotificationError`` — a caller never
sees an ``IntegrityError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    AnswerVersion,
    CampaignTemplate,
    Conversation,
    ConversationUser,
    Delivery,
    Document,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.models.directory import (
    CampaignTemplateBody,
    CampaignTemplateView,
    ConversationCreate,
    ConversationUpdate,
    ConversationView,
    DocumentCreate,
    DocumentUpdate,
    DocumentVersionView,
    DocumentView,
    MerchantCreate,
    MerchantUpdate,
    MerchantUserCreate,
    MerchantUserUpdate,
    MerchantUserView,
    MerchantView,
    MessageCreate,
    MessageView,
    is_national,
    normalize_phone,
)
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import INT32_MAX, format_notification_id
from notifyflow.models.languages import normalize_language
from notifyflow.models.notification import Campaign, NotificationStatus
from notifyflow.models.pages import (
    DEFAULT_PAGE_SIZE,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    int_key,
)
from notifyflow.models.text import plain_text

# Clocks drift: a message stamped a little ahead of ours is believed, one far ahead is a bug
# that would keep the 24-hour window open for longer than WhatsApp does.
MAX_CLOCK_SKEW = timedelta(minutes=1)
MAX_MESSAGES = 500  # the maximum page size of the messages list (MAX_PAGE_SIZE)
OPEN_STATUSES = (NotificationStatus.requested.value, NotificationStatus.answered.value)


def _not_found(what: str, ident: int) -> NotificationError:
    return NotificationError(
        RefusalCode.not_found, f"{what} {ident} does not exist", details={f"{what}_id": ident}
    )


def _invalid(path: str, message: str, where: str = "body") -> NotificationError:
    return NotificationError(
        RefusalCode.invalid_input,
        f"{path.lstrip('/')}: {message}",
        details=[{"in": where, "path": path, "message": message}],
    )


def _check_id(value: int, what: str) -> None:
    # Out-of-range ids cannot exist, and PostgreSQL would refuse to compare them to an int4.
    if not 1 <= value <= INT32_MAX:
        raise _not_found(what, value)


def _phone(value: str, country: str | None, path: str) -> str:
    """An input model's phone in E.164: a national one is read in the merchant's country."""
    if not is_national(value):
        return value
    if country is None:
        raise _invalid(
            path,
            "must be in international format, like +14155550100: this merchant has no country "
            "to read a national number in",
        )
    try:
        return normalize_phone(value, country)
    except ValueError as exc:
        raise _invalid(path, str(exc)) from None


async def _merchant(session: AsyncSession, merchant_id: int) -> Merchant:
    _check_id(merchant_id, "merchant")
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise _not_found("merchant", merchant_id)
    return merchant


async def _conversation(session: AsyncSession, conversation_id: int) -> Conversation:
    _check_id(conversation_id, "conversation")
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        raise _not_found("conversation", conversation_id)
    return conversation


async def _commit(session: AsyncSession, conflict: NotificationError) -> None:
    """Commit, or roll back and refuse with ``conflict`` when a unique constraint fires (a
    concurrent request won the race the pre-check could not see)."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise conflict from None


# ---- merchants ------------------------------------------------------------------------------


async def create_merchant(db: SessionFactory, data: MerchantCreate) -> MerchantView:
    """Create a merchant: name, WhatsApp sender, default language and time zone."""
    sender = data.whatsapp_sender
    if is_national(sender):
        sender = f"whatsapp:{_phone(sender, data.country, '/whatsapp_sender')}"
    async with db() as session:
        merchant = Merchant(
            name=data.name,
            whatsapp_sender=sender,
            country=data.country,
            instagram_page_id=data.instagram_page_id,
            default_language=data.default_language,
            timezone=data.timezone,
        )
        session.add(merchant)
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the merchant could not be created")
        )
        return MerchantView.model_validate(merchant)


async def add_merchant_user(
    db: SessionFactory, merchant_id: int, data: MerchantUserCreate
) -> MerchantUserView:
    """Add a user (admin, sales, …) to a merchant; a phone is used once per merchant."""

    phone = data.phone

    def duplicate(existing_id: int | None) -> NotificationError:
        return NotificationError(
            RefusalCode.conflict,
            f"merchant {merchant_id} already has a user with phone {phone}",
            details={"merchant_user_id": existing_id} if existing_id else None,
        )

    async with db() as session:
        merchant = await _merchant(session, merchant_id)
        phone = _phone(data.phone, merchant.country, "/phone")
        existing = await session.scalar(
            select(MerchantUser.id).where(
                MerchantUser.merchant_id == merchant_id, MerchantUser.phone == phone
            )
        )
        if existing is not None:
            raise duplicate(existing)
        user = MerchantUser(
            merchant_id=merchant_id,
            name=data.name,
            phone=phone,
            user_type=data.user_type,
            on_call=data.on_call,
        )
        session.add(user)
        await _commit(session, duplicate(None))
        return MerchantUserView.model_validate(user)


async def list_merchants(
    db: SessionFactory,
    *,
    only: int | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[MerchantView]:
    """Merchants by id (``only``: a merchant key's own, whatever else exists)."""
    check_limit(limit)
    after = int_key(decode_cursor("merchants", cursor))
    query = select(Merchant)
    if only is not None:
        query = query.where(Merchant.id == only)
    if after is not None:
        query = query.where(Merchant.id > after[0])
    async with db() as session:
        rows = (await session.scalars(query.order_by(Merchant.id).limit(limit + 1))).all()
        return _page("merchants", [MerchantView.model_validate(r) for r in rows], limit)


async def get_merchant(db: SessionFactory, merchant_id: int) -> MerchantView:
    async with db() as session:
        return MerchantView.model_validate(await _merchant(session, merchant_id))


async def update_merchant(
    db: SessionFactory, merchant_id: int, data: MerchantUpdate
) -> MerchantView:
    """Change a merchant's name, sender, language, time zone, Instagram page or country."""
    changes = _changes(data, required=("name", "whatsapp_sender", "default_language", "timezone"))
    async with db() as session:
        merchant = await _merchant(session, merchant_id)
        country = changes.get("country", merchant.country)
        sender = changes.get("whatsapp_sender")
        if sender is not None and is_national(sender):
            changes["whatsapp_sender"] = f"whatsapp:{_phone(sender, country, '/whatsapp_sender')}"
        for name, value in changes.items():
            setattr(merchant, name, value)
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the merchant could not be changed")
        )
        return MerchantView.model_validate(merchant)


async def deactivate_merchant(db: SessionFactory, merchant_id: int) -> None:
    """No new notifications for this merchant (409 at the request route); its rows, history
    and open notifications stay. Idempotent."""
    async with db() as session:
        merchant = await _merchant(session, merchant_id)
        if merchant.deactivated_at is None:
            merchant.deactivated_at = utcnow()
            await session.commit()


async def merchant_is_active(db: SessionFactory, conversation_id: int) -> bool:
    """False when the conversation's merchant was deactivated (True for unknown ids: the
    caller's own not-found check speaks for those)."""
    if not 1 <= conversation_id <= INT32_MAX:
        return True
    async with db() as session:
        deactivated = await session.scalar(
            select(Merchant.deactivated_at)
            .join(Conversation, Conversation.merchant_id == Merchant.id)
            .where(Conversation.id == conversation_id)
        )
    return deactivated is None


# ---- merchant users -------------------------------------------------------------------------


async def _user(session: AsyncSession, merchant_id: int, user_id: int) -> MerchantUser:
    await _merchant(session, merchant_id)
    _check_id(user_id, "merchant_user")
    user = await session.get(MerchantUser, user_id)
    if user is None or user.merchant_id != merchant_id:
        raise _not_found("merchant_user", user_id)
    return user


async def list_users(
    db: SessionFactory,
    merchant_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[MerchantUserView]:
    """A merchant's users by id, deactivated ones included (``deactivated_at`` set)."""
    check_limit(limit)
    after = int_key(decode_cursor("users", cursor))
    async with db() as session:
        await _merchant(session, merchant_id)
        query = select(MerchantUser).where(MerchantUser.merchant_id == merchant_id)
        if after is not None:
            query = query.where(MerchantUser.id > after[0])
        rows = (await session.scalars(query.order_by(MerchantUser.id).limit(limit + 1))).all()
        return _page("users", [MerchantUserView.model_validate(r) for r in rows], limit)


async def get_user(db: SessionFactory, merchant_id: int, user_id: int) -> MerchantUserView:
    async with db() as session:
        return MerchantUserView.model_validate(await _user(session, merchant_id, user_id))


async def update_user(
    db: SessionFactory, merchant_id: int, user_id: int, data: MerchantUserUpdate
) -> MerchantUserView:
    """Change a user's name, phone, type or on-call flag. A deactivated user is 409."""
    changes = _changes(data, required=("name", "phone", "user_type", "on_call"))
    async with db() as session:
        user = await _user(session, merchant_id, user_id)
        if user.deactivated_at is not None:
            raise NotificationError(
                RefusalCode.conflict,
                f"merchant_user {user_id} is deactivated and cannot be changed",
                details={"merchant_user_id": user_id},
            )
        if "phone" in changes:
            merchant = await _merchant(session, merchant_id)
            phone = _phone(changes["phone"], merchant.country, "/phone")
            taken = await session.scalar(
                select(MerchantUser.id).where(
                    MerchantUser.merchant_id == merchant_id,
                    MerchantUser.phone == phone,
                    MerchantUser.id != user_id,
                )
            )
            if taken is not None:
                raise NotificationError(
                    RefusalCode.conflict,
                    f"merchant {merchant_id} already has a user with phone {phone}",
                    details={"merchant_user_id": taken},
                )
            changes["phone"] = phone
        for name, value in changes.items():
            setattr(user, name, value)
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the user could not be changed")
        )
        return MerchantUserView.model_validate(user)


async def deactivate_user(db: SessionFactory, merchant_id: int, user_id: int) -> None:
    """A departed user: asked nothing more (off call too) and refused as an answerer from the
    next request on. The row stays: recipients and answers of past notifications name it.
    Idempotent."""
    async with db() as session:
        user = await _user(session, merchant_id, user_id)
        if user.deactivated_at is None:
            user.deactivated_at = utcnow()
            user.on_call = False
            await session.commit()


async def check_active_answerer(db: SessionFactory, answered_by: int) -> None:
    """A deactivated user may not answer (403, ``not_allowed``): the API, the CLI, WhatsApp
    replies and the answer tool check this before the starter is called."""
    if not 1 <= answered_by <= INT32_MAX:
        return
    async with db() as session:
        deactivated = await session.scalar(
            select(MerchantUser.deactivated_at).where(MerchantUser.id == answered_by)
        )
    if deactivated is not None:
        raise NotificationError(
            RefusalCode.not_allowed,
            f"merchant user {answered_by} was deactivated and may no longer answer",
            details=[
                {"in": "body", "path": "/answered_by", "message": "this user was deactivated"}
            ],
        )


# ---- documents ------------------------------------------------------------------------------


async def add_document(db: SessionFactory, merchant_id: int, data: DocumentCreate) -> DocumentView:
    """Add a document (UserQuestion, SupportClassification, …) to a merchant."""
    async with db() as session:
        await _merchant(session, merchant_id)
        now = utcnow()
        document = Document(
            merchant_id=merchant_id,
            category=data.category,
            title=data.title,
            content=data.content,
            created_at=now,
            updated_at=now,
        )
        session.add(document)
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the document could not be added")
        )
        return DocumentView.model_validate(document)


async def list_documents(
    db: SessionFactory,
    merchant_id: int,
    category: str | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[DocumentView]:
    """A merchant's documents, oldest first, optionally of one category; a page of them."""
    if category is not None and not category.strip():
        category = None  # "?category=" is a form's way of saying "any"
    if category is not None:
        category = category.strip()
        try:
            plain_text(category)
        except ValueError as exc:
            raise _invalid("category", str(exc), "query") from None
        if len(category) > 64:
            raise _invalid("category", "must be at most 64 characters", "query")
    check_limit(limit)
    after = int_key(decode_cursor("documents", cursor))
    async with db() as session:
        await _merchant(session, merchant_id)
        query = select(Document).where(Document.merchant_id == merchant_id)
        if category is not None:
            query = query.where(Document.category == category)
        if after is not None:
            query = query.where(Document.id > after[0])
        rows = (await session.scalars(query.order_by(Document.id).limit(limit + 1))).all()
        return _page("documents", await _with_versions(session, rows), limit)


def _page(kind: str, items: list[Any], limit: int, key: Any = None) -> Page[Any]:
    """``items`` holds up to limit + 1 rows: the extra one says there is a next page."""
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if items else None
    cursor = None
    if more and last is not None:
        cursor = encode_cursor(kind, key(last) if key else [last.id])
    return Page[Any](items=items, next_cursor=cursor)


async def get_document(db: SessionFactory, merchant_id: int, document_id: int) -> DocumentView:
    async with db() as session:
        document = await _document(session, merchant_id, document_id)
        (view,) = await _with_versions(session, [document])
        return view


async def _with_versions(session: AsyncSession, rows: Sequence[Document]) -> list[DocumentView]:
    """The documents with the versions their corrections kept (DESIGN §10), one query."""
    ids = [r.id for r in rows]
    kept: dict[int, list[DocumentVersionView]] = {}
    if ids:
        for v in (
            await session.scalars(
                select(AnswerVersion)
                .where(AnswerVersion.document_id.in_(ids))
                .order_by(AnswerVersion.document_id, AnswerVersion.version)
            )
        ).all():
            assert v.document_id is not None
            kept.setdefault(v.document_id, []).append(
                DocumentVersionView(
                    version=v.version,
                    content=v.content,
                    notification_id=format_notification_id(v.notification_id),
                    answered_by=v.answered_by,
                    created_at=v.created_at,
                )
            )
    return [
        DocumentView.model_validate(r).model_copy(update={"versions": kept.get(r.id, [])})
        for r in rows
    ]


async def _document(session: AsyncSession, merchant_id: int, document_id: int) -> Document:
    await _merchant(session, merchant_id)
    _check_id(document_id, "document")
    document = await session.get(Document, document_id)
    if document is None or document.merchant_id != merchant_id:
        raise _not_found("document", document_id)
    return document


async def update_document(
    db: SessionFactory, merchant_id: int, document_id: int, data: DocumentUpdate
) -> DocumentView:
    changes = _changes(data, required=("category", "title", "content"))
    async with db() as session:
        document = await _document(session, merchant_id, document_id)
        for name, value in changes.items():
            setattr(document, name, value)
        document.updated_at = utcnow()
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the document could not be changed")
        )
        return DocumentView.model_validate(document)


async def delete_document(db: SessionFactory, merchant_id: int, document_id: int) -> None:
    """Delete a document. One an open notification will write its answer into is refused
    (409); finished notifications that pointed at it keep their history without it."""
    async with db() as session:
        document = await _document(session, merchant_id, document_id)
        open_one = await session.scalar(
            select(Notification.id)
            .where(Notification.document_id == document_id)
            .where(Notification.status.in_(OPEN_STATUSES))
            .limit(1)
        )
        if open_one is not None:
            raise NotificationError(
                RefusalCode.conflict,
                f"document {document_id} belongs to the open notification NOTIF_{open_one}; "
                "delete it once that notification is finished",
                details={"notification_id": f"NOTIF_{open_one}"},
            )
        await session.execute(
            update(Notification)
            .where(Notification.document_id == document_id)
            .values(document_id=None)
        )
        await session.delete(document)
        await session.commit()


def _changes(data: Any, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The PATCH body's fields: at least one, and none of ``required`` set to null."""
    changes: dict[str, Any] = data.given()
    if not changes:
        raise _invalid("/", "give at least one field to change")
    for name in required:
        if name in changes and changes[name] is None:
            raise _invalid(f"/{name}", "must not be null")
    return changes


# ---- conversations --------------------------------------------------------------------------


def _conversation_view(conversation: Conversation, person: ConversationUser) -> ConversationView:
    return ConversationView(
        id=conversation.id,
        merchant_id=conversation.merchant_id,
        channel=conversation.channel,
        conversation_user_id=person.id,
        customer_phone=person.phone,
        instagram_user_id=person.instagram_user_id,
        language=conversation.language,
        last_inbound_at=conversation.last_inbound_at,
        created_at=conversation.created_at,
    )


def _check_identity(data: ConversationCreate) -> None:
    """WhatsApp conversations are keyed by phone, Instagram ones by the Instagram user id.
    Giving the other one too is refused rather than guessed at: merging two people's
    identities would send one customer's answers to another."""
    if data.channel == "whatsapp":
        if data.customer_phone is None:
            raise _invalid("/customer_phone", "required for a WhatsApp conversation")
        if data.instagram_user_id is not None:
            raise _invalid("/instagram_user_id", "not allowed for a WhatsApp conversation")
    else:
        if data.instagram_user_id is None:
            raise _invalid("/instagram_user_id", "required for an Instagram conversation")
        if data.customer_phone is not None:
            raise _invalid("/customer_phone", "not allowed for an Instagram conversation")


async def create_conversation(db: SessionFactory, data: ConversationCreate) -> ConversationView:
    """Open a merchant's conversation with a customer.

    The customer's ConversationUser is reused (one per phone or Instagram id, across
    merchants); a second conversation on the same channel for the same customer and merchant
    is refused with ``conflict`` naming the existing one.
    """
    _check_identity(data)
    # One retry: a concurrent request may create the same ConversationUser between our look-up
    # and our insert; the second pass then finds and reuses it.
    for attempt in range(2):
        try:
            return await _create_conversation(db, data)
        except IntegrityError:
            if attempt:
                break
    raise NotificationError(
        RefusalCode.conflict, "the conversation was created concurrently; fetch it instead"
    )


async def _create_conversation(db: SessionFactory, data: ConversationCreate) -> ConversationView:
    async with db() as session:
        merchant = await _merchant(session, data.merchant_id)
        phone = data.customer_phone
        if phone is not None:
            phone = _phone(phone, merchant.country, "/customer_phone")
        if data.channel == "whatsapp":
            lookup = ConversationUser.phone == phone
        else:
            lookup = ConversationUser.instagram_user_id == data.instagram_user_id
        person = await session.scalar(select(ConversationUser).where(lookup))
        if person is None:
            person = ConversationUser(phone=phone, instagram_user_id=data.instagram_user_id)
            session.add(person)
            await session.flush()
        else:
            existing = await session.scalar(
                select(Conversation.id).where(
                    Conversation.merchant_id == merchant.id,
                    Conversation.conversation_user_id == person.id,
                    Conversation.channel == data.channel,
                )
            )
            if existing is not None:
                raise NotificationError(
                    RefusalCode.conflict,
                    f"merchant {merchant.id} already has a {data.channel} conversation with "
                    f"this customer: {existing}",
                    details={"conversation_id": existing},
                )
        conversation = Conversation(
            merchant_id=merchant.id,
            conversation_user_id=person.id,
            channel=data.channel,
            language=data.language or merchant.default_language,
        )
        session.add(conversation)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            raise
        return _conversation_view(conversation, person)


async def _customer_person(session: AsyncSession, conversation: Conversation) -> ConversationUser:
    person = await session.get(ConversationUser, conversation.conversation_user_id)
    assert person is not None  # a foreign key
    return person


async def list_conversations(
    db: SessionFactory,
    *,
    merchant_id: int | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[ConversationView]:
    """Customer conversations by id, optionally of one merchant."""
    check_limit(limit)
    after = int_key(decode_cursor("conversations", cursor))
    query = (
        select(Conversation, ConversationUser)
        .join(ConversationUser, ConversationUser.id == Conversation.conversation_user_id)
        .where(Conversation.merchant_user_id.is_(None))
    )
    if merchant_id is not None:
        query = query.where(Conversation.merchant_id == merchant_id)
    if after is not None:
        query = query.where(Conversation.id > after[0])
    async with db() as session:
        rows = (await session.execute(query.order_by(Conversation.id).limit(limit + 1))).all()
    views = [_conversation_view(c, p) for c, p in rows]
    return _page("conversations", views, limit)


async def get_conversation(db: SessionFactory, conversation_id: int) -> ConversationView:
    async with db() as session:
        conversation = await _conversation(session, conversation_id)
        return _conversation_view(conversation, await _customer_person(session, conversation))


async def update_conversation(
    db: SessionFactory, conversation_id: int, data: ConversationUpdate
) -> ConversationView:
    """Change the customer's language (later localization and templates use it)."""
    changes = _changes(data)
    async with db() as session:
        conversation = await _conversation(session, conversation_id)
        if "language" in changes:
            if changes["language"] is None:
                merchant = await _merchant(session, conversation.merchant_id)
                changes["language"] = merchant.default_language
            conversation.language = changes["language"]
        await session.commit()
        return _conversation_view(conversation, await _customer_person(session, conversation))


async def delete_conversation(db: SessionFactory, conversation_id: int) -> None:
    """Delete a conversation and its messages. One that any notification or delivery refers
    to is 409: its history is part of theirs. The customer (conversation_user) stays."""
    async with db() as session:
        conversation = await _conversation(session, conversation_id)
        for table, column in (
            (Notification, Notification.conversation_id),
            (NotificationRecipient, NotificationRecipient.conversation_id),
            (Delivery, Delivery.conversation_id),
        ):
            if await session.scalar(select(exists().where(column == conversation_id))):
                raise NotificationError(
                    RefusalCode.conflict,
                    f"conversation {conversation_id} has notifications; it is kept with their "
                    "history",
                    details={
                        "conversation_id": conversation_id,
                        "referenced_by": table.__tablename__,
                    },
                )
        await session.execute(delete(Message).where(Message.conversation_id == conversation_id))
        await session.delete(conversation)
        await session.commit()


# ---- messages -------------------------------------------------------------------------------


async def add_message(db: SessionFactory, conversation_id: int, data: MessageCreate) -> MessageView:
    """Record a message. A ``user`` (inbound) message moves the conversation's 24-hour window
    forward to its time — never backward, so late-arriving old messages change nothing."""
    now = utcnow()
    try:
        created_at = data.created_at.astimezone(UTC) if data.created_at else now
    except OverflowError:
        # 0001-01-01T00:00+14:00 is valid ISO 8601 but has no UTC equivalent.
        raise _invalid("/created_at", "is out of range") from None
    if created_at > now + MAX_CLOCK_SKEW:
        raise _invalid("/created_at", "must not be in the future")
    async with db() as session:
        await _conversation(session, conversation_id)
        message = Message(
            conversation_id=conversation_id,
            role=data.role,
            content=data.content,
            other_data={},
            created_at=created_at,
        )
        session.add(message)
        if data.role == "user":
            # A conditional UPDATE, not read-modify-write: two messages arriving together
            # cannot move the window backward.
            await session.execute(
                update(Conversation)
                .where(
                    Conversation.id == conversation_id,
                    or_(
                        Conversation.last_inbound_at.is_(None),
                        Conversation.last_inbound_at < created_at,
                    ),
                )
                .values(last_inbound_at=created_at)
                .execution_options(synchronize_session=False)
            )
        await _commit(
            session, NotificationError(RefusalCode.conflict, "the message could not be recorded")
        )
        return MessageView.model_validate(message)


async def list_messages(
    db: SessionFactory,
    conversation_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[MessageView]:
    """The conversation's latest ``limit`` messages, oldest first — template sends included
    (``whatsapp_payload.type == "template"``), as the agent reads its history. ``next_cursor``
    pages toward older messages."""
    if not 1 <= limit <= MAX_MESSAGES:
        raise _invalid("limit", f"must be between 1 and {MAX_MESSAGES}", "query")
    before = decode_cursor("messages", cursor)
    if before is not None:
        if len(before) != 2 or not isinstance(before[0], str) or not isinstance(before[1], int):
            raise _invalid("cursor", "is not a cursor this API issued", "query")
        try:
            at = datetime.fromisoformat(before[0])
        except ValueError:
            raise _invalid("cursor", "is not a cursor this API issued", "query") from None
    async with db() as session:
        await _conversation(session, conversation_id)
        query = select(Message).where(Message.conversation_id == conversation_id)
        if before is not None:
            query = query.where(
                or_(
                    Message.created_at < at,
                    (Message.created_at == at) & (Message.id < before[1]),
                )
            )
        rows: Sequence[Message] = (
            await session.scalars(
                query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
            )
        ).all()
        views = [MessageView.model_validate(row) for row in rows]
        more = len(views) > limit
        views = views[:limit]
        next_cursor = None
        if more:
            oldest = views[-1]
            next_cursor = encode_cursor(
                "messages", [oldest.created_at.astimezone(UTC).isoformat(), oldest.id]
            )
        return Page[MessageView](items=list(reversed(views)), next_cursor=next_cursor)


# ---- campaign templates ---------------------------------------------------------------------


def _campaign(value: str | Campaign) -> Campaign:
    try:
        return Campaign(value)
    except ValueError:
        names = ", ".join(c.value for c in Campaign)
        raise _invalid("campaign", f"unknown campaign; expected one of {names}", "path") from None


def _language(value: str) -> str:
    try:
        return normalize_language(value)
    except ValueError as exc:
        raise _invalid("language", str(exc), "path") from None


def _template_view(row: CampaignTemplate) -> CampaignTemplateView:
    return CampaignTemplateView(
        id=row.id,
        campaign=row.campaign,
        language=row.language,
        merchant_id=row.merchant_scope or None,
        content_sid=row.content_sid,
        body=row.body,
        updated_at=row.updated_at,
    )


async def put_campaign_template(
    db: SessionFactory, campaign: str | Campaign, language: str, data: CampaignTemplateBody
) -> CampaignTemplateView:
    """Set the template a campaign uses in ``language`` — the product default, or a merchant's
    own when ``merchant_id`` is given. Creates or replaces."""
    name = _campaign(campaign)
    lang = _language(language)
    scope = data.merchant_id or 0
    for attempt in range(2):
        async with db() as session:
            if data.merchant_id is not None:
                await _merchant(session, data.merchant_id)
            row = await session.scalar(
                select(CampaignTemplate).where(
                    CampaignTemplate.campaign == name.value,
                    CampaignTemplate.language == lang,
                    CampaignTemplate.merchant_scope == scope,
                )
            )
            now = utcnow()
            if row is None:
                row = CampaignTemplate(
                    campaign=name.value,
                    language=lang,
                    merchant_scope=scope,
                    created_at=now,
                )
                session.add(row)
            row.content_sid = data.content_sid
            row.body = data.body
            row.updated_at = now
            try:
                await session.commit()
            except IntegrityError:
                # Two first-time PUTs raced on the insert; the second pass updates the winner.
                await session.rollback()
                if attempt:
                    raise NotificationError(
                        RefusalCode.conflict, "the template was changed concurrently; retry"
                    ) from None
                continue
            return _template_view(row)
    raise AssertionError("unreachable")
