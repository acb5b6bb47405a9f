"""The database itself refuses the duplicates that would be bugs; seeding is idempotent."""

from __future__ import annotations

import re
import secrets

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from notifyflow.db.seed import (
    DEFAULT_LANGUAGES,
    DEFAULT_TEMPLATES,
    DEMO_CUSTOMER_MESSAGE,
    TEMPLATE_VARIABLES,
    DemoIds,
    ensure_default_templates,
    seed_demo,
    seed_demo_sync,
)
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Base,
    CampaignTemplate,
    Conversation,
    ConversationUser,
    Delivery,
    Document,
    InboundEvent,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.models.notification import Campaign
from tests.fixtures.database import MadeMerchant, MerchantFactory


def _key() -> str:
    return f"test-{secrets.token_hex(8)}"


async def _add(db: SessionFactory, *rows: Base) -> None:
    async with db() as session:
        session.add_all(rows)
        await session.commit()


async def _refused(db: SessionFactory, *rows: Base) -> None:
    with pytest.raises(IntegrityError):
        await _add(db, *rows)


async def _notification(
    db: SessionFactory, m: MadeMerchant, *, multiple: bool = False, key: str | None = None
) -> int:
    notification = Notification(
        type="user_question_request",
        merchant_id=m.merchant_id,
        conversation_id=m.conversation_id,
        context={"question": "Do you ship to Canada?"},
        allow_multiple_answers=multiple,
        idempotency_key=key,
    )
    await _add(db, notification)
    return notification.id


def _answer(
    notification_id: int, m: MadeMerchant, *, accepted: bool, single: bool
) -> NotificationAnswer:
    return NotificationAnswer(
        notification_id=notification_id,
        answered_by=m.admin_ids[0],
        source="api",
        answer_text='{"answer": "Yes"}',
        accepted=accepted,
        single_answer=single,
        reason_code=None if accepted else "schema",
    )


def _delivery(notification_id: int, m: MadeMerchant, key: str) -> Delivery:
    return Delivery(
        notification_id=notification_id,
        idempotency_key=key,
        kind="answer",
        recipient_kind="customer",
        conversation_id=m.conversation_id,
        method="direct",
        channel="whatsapp",
        to_address=m.customer_phone or "",
    )


@pytest.fixture
async def merchant(make_merchant: MerchantFactory) -> MadeMerchant:
    return await make_merchant(admins=2, user_types=["sales"])


async def test_notification_idempotency_key_is_unique(
    db: SessionFactory, merchant: MadeMerchant
) -> None:
    key = _key()
    await _notification(db, merchant, key=key)
    with pytest.raises(IntegrityError):
        await _notification(db, merchant, key=key)
    # No key at all is not a duplicate.
    await _notification(db, merchant)
    await _notification(db, merchant)


async def test_delivery_idempotency_key_is_unique(
    db: SessionFactory, merchant: MadeMerchant
) -> None:
    notification_id = await _notification(db, merchant)
    key = f"NOTIF_{notification_id}:answer:customer"
    await _add(db, _delivery(notification_id, merchant, key))
    await _refused(db, _delivery(notification_id, merchant, key))
    await _add(db, _delivery(notification_id, merchant, key + ":other"))


async def test_one_accepted_answer_per_single_answer_notification(
    db: SessionFactory, merchant: MadeMerchant
) -> None:
    single = await _notification(db, merchant)
    await _add(db, _answer(single, merchant, accepted=False, single=True))
    await _add(db, _answer(single, merchant, accepted=True, single=True))
    # Rejected attempts are always recorded, before and after the accepted one.
    await _add(db, _answer(single, merchant, accepted=False, single=True))
    await _refused(db, _answer(single, merchant, accepted=True, single=True))

    # Another single-answer notification has its own accepted answer.
    other = await _notification(db, merchant)
    await _add(db, _answer(other, merchant, accepted=True, single=True))

    multiple = await _notification(db, merchant, multiple=True)
    await _add(
        db,
        _answer(multiple, merchant, accepted=True, single=False),
        _answer(multiple, merchant, accepted=True, single=False),
    )
    async with db() as session:
        result = await session.execute(
            select(NotificationAnswer.notification_id, func.count())
            .where(NotificationAnswer.accepted)
            .where(NotificationAnswer.notification_id.in_([single, other, multiple]))
            .group_by(NotificationAnswer.notification_id)
        )
        counts = {notification_id: count for notification_id, count in result}
    assert counts == {single: 1, other: 1, multiple: 2}


async def test_conversation_user_phone_and_instagram_id_are_unique(db: SessionFactory) -> None:
    phone = f"+1888{secrets.randbelow(10**9):09d}"
    await _add(db, ConversationUser(phone=phone))
    await _refused(db, ConversationUser(phone=phone, name="Someone else"))
    instagram = _key()
    await _add(db, ConversationUser(instagram_user_id=instagram))
    await _refused(db, ConversationUser(instagram_user_id=instagram))
    # Several people without a phone (Instagram-only) are fine.
    await _add(db, ConversationUser(instagram_user_id=_key()), ConversationUser(name="x"))


async def test_campaign_template_is_unique_per_campaign_language_and_scope(
    db: SessionFactory, merchant: MadeMerchant
) -> None:
    campaign = _key()

    def template(scope: int, language: str = "en") -> CampaignTemplate:
        return CampaignTemplate(
            campaign=campaign,
            language=language,
            merchant_scope=scope,
            content_sid="HX" + "0" * 32,
            body="Hello {{1}} there",
        )

    await _add(db, template(0))
    await _refused(db, template(0))
    await _add(db, template(0, "es"), template(merchant.merchant_id))
    await _refused(db, template(merchant.merchant_id))


async def test_other_unique_constraints(
    db: SessionFactory, merchant: MadeMerchant, make_merchant: MerchantFactory
) -> None:
    admin = merchant.admin_ids[0]
    phone = merchant.phones[admin]
    # One merchant user per phone within a merchant; another merchant may reuse the number.
    await _refused(
        db, MerchantUser(merchant_id=merchant.merchant_id, name="Dup", phone=phone, user_type="x")
    )
    other = await make_merchant(admins=1)
    await _add(
        db, MerchantUser(merchant_id=other.merchant_id, name="Same", phone=phone, user_type="x")
    )

    await _refused(
        db,
        Conversation(
            merchant_id=merchant.merchant_id,
            conversation_user_id=merchant.customer_id,
            channel="whatsapp",
        ),
    )

    notification_id = await _notification(db, merchant)
    admin_conversation = other.conversation_id  # any conversation will do for the ledger

    def recipient() -> NotificationRecipient:
        return NotificationRecipient(
            notification_id=notification_id,
            merchant_user_id=admin,
            conversation_id=admin_conversation,
        )

    await _add(db, recipient())
    await _refused(db, recipient())

    sid = "SM" + secrets.token_hex(16)

    def message() -> Message:
        return Message(
            conversation_id=merchant.conversation_id,
            role="user",
            content="hi",
            provider_message_id=sid,
        )

    await _add(db, message())
    await _refused(db, message())

    event = _key()
    await _add(db, InboundEvent(event_key=event))
    await _refused(db, InboundEvent(event_key=event))


async def test_foreign_keys_are_enforced(db: SessionFactory) -> None:
    await _refused(db, MerchantUser(merchant_id=2_000_000_000, name="x", phone="+1", user_type="x"))


# --- default templates -------------------------------------------------------------------------

_SLOT = re.compile(r"\{\{(\d+)\}\}")


def test_default_templates_cover_every_campaign_and_language() -> None:
    assert set(TEMPLATE_VARIABLES) == set(Campaign)
    assert set(DEFAULT_TEMPLATES) == {(c, lang) for c in Campaign for lang in ("en", "es")}
    assert DEFAULT_LANGUAGES == ("en", "es")
    sids = [t.content_sid for t in DEFAULT_TEMPLATES.values()]
    assert all(re.fullmatch(r"HX[0-9a-f]{32}", sid) for sid in sids)
    assert len(set(sids)) == len(sids)
    for (campaign, language), template in DEFAULT_TEMPLATES.items():
        slots = [int(n) for n in _SLOT.findall(template.body)]
        assert sorted(set(slots)) == list(range(1, len(TEMPLATE_VARIABLES[campaign]) + 1)), (
            campaign,
            language,
        )
        # Meta refuses templates that begin or end with a variable.
        assert not _SLOT.match(template.body.strip())
        assert not re.search(r"\{\{\d+\}\}$", template.body.strip())
        assert len(template.body) < 400
        assert template.language == language and template.campaign == campaign
    for campaign in Campaign:
        assert DEFAULT_TEMPLATES[campaign, "en"].body != DEFAULT_TEMPLATES[campaign, "es"].body
    assert DEFAULT_TEMPLATES[Campaign.customer_support_response, "en"].body.startswith(
        "Hello! Our team has an update on your support request: {{1}}"
    )


async def test_ensure_default_templates_fills_gaps_and_never_overwrites(
    db: SessionFactory,
) -> None:
    await ensure_default_templates(db)
    assert await ensure_default_templates(db) == 0
    default = (Campaign.merchant_user_question_request, "es")
    async with db() as session:
        rows = (
            await session.scalars(
                select(CampaignTemplate).where(CampaignTemplate.merchant_scope == 0)
            )
        ).all()
        stored = {(r.campaign, r.language): r for r in rows}
        assert {(str(c), lang) for c, lang in DEFAULT_TEMPLATES} <= set(stored)
        row = stored[str(default[0]), default[1]]
        original = row.body, row.content_sid
        row.body, row.content_sid = "Operator's own wording: {{1}} / {{2}} ok", "HX" + "1" * 32
        await session.commit()
    try:
        assert await ensure_default_templates(db) == 0
        async with db() as session:
            kept = await session.get(CampaignTemplate, row.id)
            assert kept is not None and kept.content_sid == "HX" + "1" * 32
            await session.delete(kept)
            await session.commit()
        assert await ensure_default_templates(db) == 1
    finally:
        async with db() as session:
            restored = await session.scalar(
                select(CampaignTemplate).where(
                    CampaignTemplate.campaign == str(default[0]),
                    CampaignTemplate.language == default[1],
                    CampaignTemplate.merchant_scope == 0,
                )
            )
            assert restored is not None
            restored.body, restored.content_sid = original
            await session.commit()
    assert (restored.body, restored.content_sid) == (
        DEFAULT_TEMPLATES[default].body,
        DEFAULT_TEMPLATES[default].content_sid,
    )


# --- demo seed ---------------------------------------------------------------------------------


async def _row_counts(db: SessionFactory) -> dict[str, int]:
    async with db() as session:
        return {
            name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in Base.metadata.tables.items()
        }


async def test_seed_demo_twice_creates_nothing_new(db: SessionFactory, demo: DemoIds) -> None:
    before = await _row_counts(db)
    again = await seed_demo(db)
    assert again == demo and not again.created
    assert await _row_counts(db) == before


async def test_demo_content(db: SessionFactory, demo: DemoIds) -> None:
    async with db() as session:
        merchant = await session.get(Merchant, demo.merchant_id)
        assert merchant is not None
        assert (merchant.name, merchant.whatsapp_sender, merchant.default_language) == (
            "Acme Outdoor",
            "whatsapp:+14155550100",
            "en",
        )
        assert merchant.timezone == "America/New_York"
        users = (
            await session.scalars(
                select(MerchantUser)
                .where(MerchantUser.merchant_id == demo.merchant_id)
                .order_by(MerchantUser.id)
            )
        ).all()
        assert [(u.name, u.phone, u.user_type, u.on_call) for u in users] == [
            ("Ana Admin", "+15550000001", "admin", False),
            ("Omar Admin", "+15550000002", "admin", True),
            ("Sam Sales", "+15550000003", "sales", False),
            ("Riley Returns", "+15550000004", "returns", False),
        ]
        assert demo.admin_ids == (users[0].id, users[1].id)
        assert (demo.sales_id, demo.returns_id) == (users[2].id, users[3].id)
        documents = (
            await session.scalars(
                select(Document).where(
                    Document.merchant_id == demo.merchant_id,
                    Document.category == "SupportClassification",
                )
            )
        ).all()
        content = {d.title: d.content.lower() for d in documents}
        assert set(content) == {"sales", "returns", "technical"}
        assert all(w in content["sales"] for w in ("pricing", "discount", "bulk", "availab"))
        assert all(w in content["returns"] for w in ("refund", "return", "exchange", "damaged"))
        assert all(w in content["technical"] for w in ("setup", "assembly", "app", "bug"))
        conversation = await session.get(Conversation, demo.conversation_id)
        assert conversation is not None
        assert (conversation.channel, conversation.language) == ("whatsapp", "es")
        assert conversation.last_inbound_at is not None
        assert conversation.last_inbound_at.tzinfo is not None
        customer = await session.get(ConversationUser, conversation.conversation_user_id)
        assert customer is not None and demo.customer_id == customer.id
        assert (customer.phone, customer.name) == ("+15551230000", "Casey Customer")
        messages = (
            await session.scalars(
                select(Message).where(Message.conversation_id == demo.conversation_id)
            )
        ).all()
        assert [(m.role, m.content) for m in messages][:1] == [("user", DEMO_CUSTOMER_MESSAGE)]
        templates = await session.scalar(
            select(func.count())
            .select_from(CampaignTemplate)
            .where(CampaignTemplate.merchant_scope == 0)
        )
        assert templates is not None and templates >= len(DEFAULT_TEMPLATES)


async def test_seed_demo_sync_reports_the_same_ids(
    database_url: str, db: SessionFactory, demo: DemoIds
) -> None:
    before = await _row_counts(db)
    # Called while this test's event loop runs, as a CLI-style sync call.
    summary = seed_demo_sync(database_url)
    assert "Acme Outdoor" in summary and "\n" not in summary
    assert f"conversation {demo.conversation_id}" in summary
    assert await _row_counts(db) == before


async def test_make_merchant_gives_isolated_merchants(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    a = await make_merchant(admins=3, on_call_admins=1, user_types=["returns", "returns"])
    b = await make_merchant(
        admins=1, language="es", last_inbound_at=None, channel="instagram", customer_message="Hi"
    )
    assert len(a.admin_ids) == 3 and len(a.user_ids["returns"]) == 2
    assert a.on_call_ids == [a.admin_ids[0]]
    assert a.merchant_id != b.merchant_id
    assert not set(a.phones.values()) & set(b.phones.values())
    assert b.customer_phone is None and b.instagram_user_id
    async with db() as session:
        conversation = await session.get(Conversation, b.conversation_id)
        assert conversation is not None
        assert (conversation.language, conversation.last_inbound_at) == ("es", None)
        assert conversation.channel == "instagram"
