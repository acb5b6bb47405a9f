"""Directory routes end to end: HTTP in, rows in the real database out (DESIGN §4)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import CampaignTemplate, Conversation, ConversationUser, Message
from tests.api.conftest import assert_envelope, paths
from tests.fixtures.database import unique_phone

SID = "HX0123456789abcdef0123456789abcdef"


async def merchant(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Acme", "whatsapp_sender": unique_phone(), **fields}
    response = await api.post("/v1/merchants", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def conversation(api: httpx.AsyncClient, merchant_id: int, **fields: Any) -> dict[str, Any]:
    body = {"merchant_id": merchant_id, "channel": "whatsapp", "customer_phone": unique_phone()}
    response = await api.post("/v1/conversations", json={**body, **fields})
    assert response.status_code == 201, response.text
    return response.json()


# ---- merchants ------------------------------------------------------------------------------


async def test_create_merchant_normalizes_and_defaults(api: httpx.AsyncClient) -> None:
    phone = unique_phone()
    spaced = f"{phone[:2]} {phone[2:5]} {phone[5:8]}-{phone[8:]}"
    response = await api.post(
        "/v1/merchants", json={"name": "  Acme Outdoor  ", "whatsapp_sender": spaced}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] > 0
    assert body["name"] == "Acme Outdoor"
    assert body["whatsapp_sender"] == f"whatsapp:{phone}"
    assert (body["default_language"], body["timezone"]) == ("en", "UTC")

    body = await merchant(
        api,
        whatsapp_sender=f"whatsapp:{phone}",
        default_language="pt_br",
        timezone="America/Sao_Paulo",
    )
    assert body["whatsapp_sender"] == f"whatsapp:{phone}"
    assert (body["default_language"], body["timezone"]) == ("pt-BR", "America/Sao_Paulo")


async def test_create_merchant_refuses_each_bad_field_with_its_path(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/v1/merchants",
        json={
            "name": "   ",
            "whatsapp_sender": "whatsapp:12345",
            "default_language": "english!",
            "timezone": "Mars/Olympus_Mons",
            "surprise": 1,
        },
    )
    details = assert_envelope(response, 422, "invalid_input")
    assert paths(details) == {
        "/name",
        "/whatsapp_sender",
        "/default_language",
        "/timezone",
        "/surprise",
    }
    assert all(d["in"] == "body" for d in details)

    response = await api.post("/v1/merchants", json={"name": "x" * 201, "whatsapp_sender": "+1"})
    assert paths(assert_envelope(response, 422)) == {"/name", "/whatsapp_sender"}

    response = await api.post("/v1/merchants", json={})
    assert paths(assert_envelope(response, 422)) == {"/name", "/whatsapp_sender"}


async def test_merchant_users_phone_once_per_merchant(api: httpx.AsyncClient) -> None:
    m1, m2 = await merchant(api), await merchant(api)
    phone = unique_phone()
    response = await api.post(
        f"/v1/merchants/{m1['id']}/users",
        json={"name": "Ana", "phone": phone, "user_type": "admin", "on_call": True},
    )
    assert response.status_code == 201
    ana = response.json()
    assert ana["merchant_id"] == m1["id"] and ana["phone"] == phone and ana["on_call"] is True

    # The same number typed differently is the same phone.
    spaced = f"{phone[:2]} ({phone[2:5]}) {phone[5:]}"
    response = await api.post(
        f"/v1/merchants/{m1['id']}/users",
        json={"name": "Ana again", "phone": spaced, "user_type": "sales"},
    )
    details = assert_envelope(response, 409, "conflict")
    assert details == {"merchant_user_id": ana["id"]}

    # Another merchant may have a user with that phone.
    response = await api.post(
        f"/v1/merchants/{m2['id']}/users",
        json={"name": "Ana", "phone": phone, "user_type": "returns"},
    )
    assert response.status_code == 201 and response.json()["on_call"] is False


async def test_merchant_users_validation_and_unknown_merchant(api: httpx.AsyncClient) -> None:
    m = await merchant(api)
    response = await api.post(
        f"/v1/merchants/{m['id']}/users",
        json={"name": "Bo", "phone": "+1 555-0100", "user_type": "Sales Team"},
    )
    assert paths(assert_envelope(response, 422)) == {"/phone", "/user_type"}

    for missing in (
        "/v1/merchants/2147483000/users",
        "/v1/merchants/99999999999999999999/users",
        "/v1/merchants/-3/users",
    ):
        response = await api.post(
            missing, json={"name": "Bo", "phone": unique_phone(), "user_type": "sales"}
        )
        assert_envelope(response, 404, "not_found")

    response = await api.post(
        "/v1/merchants/abc/users", json={"name": "Bo", "phone": unique_phone(), "user_type": "x"}
    )
    (detail,) = assert_envelope(response, 422, "invalid_input")
    assert (detail["in"], detail["path"]) == ("path", "merchant_id")


# ---- documents ------------------------------------------------------------------------------


async def test_documents_add_and_list_by_category(api: httpx.AsyncClient) -> None:
    m = await merchant(api)
    url = f"/v1/merchants/{m['id']}/documents"
    docs = [
        {"category": "SupportClassification", "title": "returns", "content": "Refunds."},
        {"category": "UserQuestion", "title": "Hours?", "content": "9 to 5."},
        {"category": "SupportClassification", "title": "sales", "content": "Pricing."},
    ]
    for doc in docs:
        response = await api.post(url, json=doc)
        assert response.status_code == 201
        assert {k: response.json()[k] for k in doc} == doc

    everything = (await api.get(url)).json()["items"]
    assert [d["title"] for d in everything] == ["returns", "Hours?", "sales"]
    classified = await api.get(url, params={"category": "SupportClassification"})
    assert classified.status_code == 200
    assert [d["title"] for d in classified.json()["items"]] == ["returns", "sales"]
    assert (await api.get(url, params={"category": "Nothing"})).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert (await api.get(url, params={"category": ""})).json()["items"] == everything

    assert_envelope(await api.get("/v1/merchants/2147483000/documents"), 404, "not_found")
    response = await api.post(url, json={"category": "", "title": "t", "content": "  "})
    assert paths(assert_envelope(response, 422)) == {"/category", "/content"}


# ---- conversations and messages -------------------------------------------------------------


async def test_conversation_defaults_language_and_reuses_the_customer(
    api: httpx.AsyncClient, db: SessionFactory
) -> None:
    m1 = await merchant(api, default_language="es")
    m2 = await merchant(api)
    phone = unique_phone()
    c1 = await conversation(api, m1["id"], customer_phone=phone)
    assert c1["language"] == "es" and c1["customer_phone"] == phone
    assert c1["channel"] == "whatsapp" and c1["last_inbound_at"] is None

    # The same customer with another merchant: the same ConversationUser, a new conversation.
    c2 = await conversation(api, m2["id"], customer_phone=f"whatsapp:{phone}", language="PT-br")
    assert c2["conversation_user_id"] == c1["conversation_user_id"]
    assert c2["id"] != c1["id"] and c2["language"] == "pt-BR"
    async with db() as session:
        people = await session.scalar(
            select(func.count())
            .select_from(ConversationUser)
            .where(ConversationUser.phone == phone)
        )
    assert people == 1

    # A second WhatsApp conversation with that customer at the same merchant is a duplicate.
    response = await api.post(
        "/v1/conversations",
        json={"merchant_id": m1["id"], "channel": "whatsapp", "customer_phone": phone},
    )
    assert assert_envelope(response, 409, "conflict") == {"conversation_id": c1["id"]}


async def test_instagram_conversation_and_identity_rules(api: httpx.AsyncClient) -> None:
    m = await merchant(api)
    c = await conversation(
        api, m["id"], channel="instagram", customer_phone=None, instagram_user_id="ig_1784001"
    )
    assert c["instagram_user_id"] == "ig_1784001" and c["customer_phone"] is None

    cases = [
        ({"channel": "whatsapp"}, "/customer_phone"),
        ({"channel": "instagram"}, "/instagram_user_id"),
        (
            {"channel": "whatsapp", "customer_phone": unique_phone(), "instagram_user_id": "9"},
            "/instagram_user_id",
        ),
        (
            {"channel": "instagram", "instagram_user_id": "9", "customer_phone": unique_phone()},
            "/customer_phone",
        ),
        ({"channel": "sms", "customer_phone": unique_phone()}, "/channel"),
        ({"channel": "whatsapp", "customer_phone": "0800 FLOWERS"}, "/customer_phone"),
        ({"channel": "whatsapp", "customer_phone": unique_phone(), "language": "?"}, "/language"),
    ]
    for fields, path in cases:
        response = await api.post("/v1/conversations", json={"merchant_id": m["id"], **fields})
        assert paths(assert_envelope(response, 422)) == {path}, fields

    response = await api.post(
        "/v1/conversations",
        json={"merchant_id": 2147483000, "channel": "whatsapp", "customer_phone": unique_phone()},
    )
    assert_envelope(response, 404, "not_found")


async def test_user_messages_move_the_window_forward_only(
    api: httpx.AsyncClient, db: SessionFactory
) -> None:
    m = await merchant(api)
    c = await conversation(api, m["id"])
    url = f"/v1/conversations/{c['id']}/messages"

    async def last_inbound() -> datetime | None:
        async with db() as session:
            row = await session.get(Conversation, c["id"])
            assert row is not None
            return row.last_inbound_at

    recent = datetime.now(UTC) - timedelta(minutes=5)
    response = await api.post(
        url, json={"role": "user", "content": "Hola", "created_at": recent.isoformat()}
    )
    assert response.status_code == 201
    assert response.json()["role"] == "user"
    assert await last_inbound() == recent

    # An older message that arrives late, and an assistant message, leave the window alone.
    older = recent - timedelta(hours=3)
    await api.post(url, json={"role": "user", "content": "old", "created_at": older.isoformat()})
    await api.post(url, json={"role": "assistant", "content": "Hi! How can I help?"})
    assert await last_inbound() == recent

    # created_at defaults to now; within a minute ahead of our clock is believed.
    before = datetime.now(UTC)
    response = await api.post(url, json={"role": "user", "content": "now"})
    assert response.status_code == 201
    now_ = await last_inbound()
    assert now_ is not None and now_ >= before
    slightly_ahead = datetime.now(UTC) + timedelta(seconds=20)
    response = await api.post(
        url, json={"role": "user", "content": "skew", "created_at": slightly_ahead.isoformat()}
    )
    assert response.status_code == 201
    assert await last_inbound() == slightly_ahead


async def test_message_validation(api: httpx.AsyncClient) -> None:
    m = await merchant(api)
    c = await conversation(api, m["id"])
    url = f"/v1/conversations/{c['id']}/messages"
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    cases = [
        ({"role": "user", "content": "x", "created_at": future}, "/created_at"),
        ({"role": "user", "content": "x", "created_at": "2024-01-01T10:00:00"}, "/created_at"),
        (
            {"role": "user", "content": "x", "created_at": "0001-01-01T00:00:00+14:00"},
            "/created_at",
        ),
        ({"role": "system", "content": "x"}, "/role"),
        ({"role": "user", "content": "   "}, "/content"),
        ({"role": "user", "content": "nul\x00byte"}, "/content"),
        ({"role": "user"}, "/content"),
    ]
    for body, path in cases:
        response = await api.post(url, json=body)
        assert paths(assert_envelope(response, 422)) == {path}, body
    assert (await api.get(url)).json() == {"items": [], "next_cursor": None}

    response = await api.post(
        "/v1/conversations/2147483000/messages", json={"role": "user", "content": "x"}
    )
    assert_envelope(response, 404, "not_found")
    assert_envelope(await api.get("/v1/conversations/2147483000/messages"), 404, "not_found")


async def test_messages_list_oldest_first_with_template_sends(
    api: httpx.AsyncClient, db: SessionFactory
) -> None:
    m = await merchant(api)
    c = await conversation(api, m["id"])
    url = f"/v1/conversations/{c['id']}/messages"
    t0 = datetime.now(UTC) - timedelta(hours=30)
    await api.post(url, json={"role": "user", "content": "first", "created_at": t0.isoformat()})
    # What the delivery activity writes for a campaign send.
    async with db() as session:
        session.add(
            Message(
                conversation_id=c["id"],
                role="assistant",
                content="Re your question: we open at 9.",
                other_data={"kind": "answer"},
                whatsapp_payload={"type": "template", "campaign": "merchant_user_question_answer"},
                created_at=t0 + timedelta(hours=26),
            )
        )
        await session.commit()
    await api.post(
        url,
        json={
            "role": "user",
            "content": "second",
            "created_at": (t0 + timedelta(hours=1)).isoformat(),
        },
    )
    response = await api.get(url)
    assert response.status_code == 200
    listed = response.json()["items"]
    assert [msg["content"] for msg in listed] == [
        "first",
        "second",
        "Re your question: we open at 9.",
    ]
    assert listed[-1]["whatsapp_payload"]["type"] == "template"
    latest_two = (await api.get(url, params={"limit": 2})).json()["items"]
    assert [msg["content"] for msg in latest_two] == ["second", "Re your question: we open at 9."]
    assert_envelope(await api.get(url, params={"limit": 0}), 422)


# ---- campaign templates ---------------------------------------------------------------------


async def test_put_campaign_template_upserts_per_language_and_merchant(
    api: httpx.AsyncClient, db: SessionFactory
) -> None:
    url = "/v1/campaigns/customer_request_expired/templates/pt-br"
    body = {"content_sid": SID, "body": "Olá {{1}}, desculpe a demora."}
    first = await api.put(url, json=body)
    assert first.status_code == 200
    assert first.json()["language"] == "pt-BR" and first.json()["merchant_id"] is None

    again = await api.put(url, json={**body, "body": "Oi {{1}}, desculpe!"})
    assert again.status_code == 200
    assert (
        again.json()["id"] == first.json()["id"] and again.json()["body"] == "Oi {{1}}, desculpe!"
    )

    m = await merchant(api)
    own = await api.put(url, json={**body, "merchant_id": m["id"]})
    assert own.status_code == 200
    assert own.json()["merchant_id"] == m["id"] and own.json()["id"] != first.json()["id"]

    async with db() as session:
        rows = (
            await session.scalars(
                select(CampaignTemplate).where(
                    CampaignTemplate.campaign == "customer_request_expired",
                    CampaignTemplate.language == "pt-BR",
                )
            )
        ).all()
    assert sorted(r.merchant_scope for r in rows) == [0, m["id"]]


async def test_put_campaign_template_validation(api: httpx.AsyncClient) -> None:
    url = "/v1/campaigns/notification_closed/templates/en"
    cases = [
        (
            {"content_sid": "MG0123456789abcdef0123456789abcdef", "body": "Hi {{1}}."},
            "/content_sid",
        ),
        ({"content_sid": SID[:-1], "body": "Hi {{1}}."}, "/content_sid"),
        ({"content_sid": SID, "body": "No slots here."}, "/body"),
        ({"content_sid": SID, "body": "Hi {{1}} and {{3}}."}, "/body"),
        ({"content_sid": SID, "body": "Hi {{ 1 }}."}, "/body"),
        ({"content_sid": SID, "body": "Hi {{1}."}, "/body"),
        ({"content_sid": SID, "body": "x" * 1020 + " {{1}}."}, "/body"),
        ({"content_sid": SID, "body": "Hi {{1}}.", "merchant_id": 0}, "/merchant_id"),
    ]
    for body, path in cases:
        response = await api.put(url, json=body)
        assert paths(assert_envelope(response, 422)) == {path}, body

    response = await api.put(
        "/v1/campaigns/no_such_campaign/templates/en", json={"content_sid": SID, "body": "a {{1}}."}
    )
    assert paths(assert_envelope(response, 422)) == {"campaign"}
    response = await api.put(
        "/v1/campaigns/notification_closed/templates/english-please-x",
        json={"content_sid": SID, "body": "a {{1}}."},
    )
    assert paths(assert_envelope(response, 422, "invalid_input")) == {"language"}
    response = await api.put(
        url, json={"content_sid": SID, "body": "a {{1}}.", "merchant_id": 2147483000}
    )
    assert_envelope(response, 404, "not_found")


async def test_concurrent_duplicates_are_409_never_500(
    api: httpx.AsyncClient, db: SessionFactory
) -> None:
    """Racing requests that the pre-checks cannot see each other through: the unique
    constraints decide, and the losers get the same refusal as a sequential duplicate."""
    m = await merchant(api)
    phone = unique_phone()
    conversations = await asyncio.gather(
        *[
            api.post(
                "/v1/conversations",
                json={"merchant_id": m["id"], "channel": "whatsapp", "customer_phone": phone},
            )
            for _ in range(8)
        ]
    )
    assert sorted(r.status_code for r in conversations) == [201] + [409] * 7
    users = await asyncio.gather(
        *[
            api.post(
                f"/v1/merchants/{m['id']}/users",
                json={"name": "Ana", "phone": phone, "user_type": "admin"},
            )
            for _ in range(8)
        ]
    )
    assert sorted(r.status_code for r in users) == [201] + [409] * 7
    for response in [*conversations, *users]:
        if response.status_code == 409:
            assert_envelope(response, 409, "conflict")

    url = "/v1/campaigns/notification_reminder/templates/fr"
    templates = await asyncio.gather(
        *[
            api.put(
                url,
                json={
                    "content_sid": SID,
                    "body": f"Rappel {n}: {{{{1}}}} ?",
                    "merchant_id": m["id"],
                },
            )
            for n in range(8)
        ]
    )
    assert {r.status_code for r in templates} == {200}
    assert len({r.json()["id"] for r in templates}) == 1
    async with db() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(CampaignTemplate)
            .where(CampaignTemplate.merchant_scope == m["id"])
        )
    assert count == 1
