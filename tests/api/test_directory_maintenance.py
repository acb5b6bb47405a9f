"""A directory you can maintain (issue 18): GET, PATCH and DELETE for merchants, merchant users,
documents and conversations; every list route a page with an opaque cursor; a departed admin
refused at once, on the notifications that already asked them too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import select

from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import NotificationAnswer
from notifyflow.models.pages import MAX_PAGE_SIZE
from tests.api.conftest import assert_envelope, client_for, paths
from tests.api.test_notification_routes import QUESTION, ask, until_sent, until_status
from tests.fixtures.database import unique_phone
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def new_merchant(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Acme", "whatsapp_sender": unique_phone(), **fields}
    return await created(await api.post("/v1/merchants", json=body))


async def walk(api: httpx.AsyncClient, url: str, **params: Any) -> list[list[Any]]:
    """Every page of a list route, following next_cursor."""
    pages: list[list[Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


# ---- pages ----------------------------------------------------------------------------------


async def test_every_list_route_pages_with_an_opaque_cursor(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api)
    base = f"/v1/merchants/{m['id']}"
    users = [
        await created(
            await api.post(
                f"{base}/users",
                json={"name": f"U{i}", "phone": unique_phone(), "user_type": "sales"},
            )
        )
        for i in range(5)
    ]
    pages = await walk(api, f"{base}/users", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [u["id"] for p in pages for u in p] == [u["id"] for u in users]

    docs = [
        await created(
            await api.post(
                f"{base}/documents",
                json={"category": "UserQuestion", "title": f"Q{i}?", "content": f"A{i}."},
            )
        )
        for i in range(3)
    ]
    pages = await walk(api, f"{base}/documents", limit=2, category="UserQuestion")
    assert [d["id"] for p in pages for d in p] == [d["id"] for d in docs]

    conversations = [
        await created(
            await api.post(
                "/v1/conversations",
                json={
                    "merchant_id": m["id"],
                    "channel": "whatsapp",
                    "customer_phone": unique_phone(),
                },
            )
        )
        for _ in range(3)
    ]
    pages = await walk(api, "/v1/conversations", limit=2, merchant_id=m["id"])
    assert [c["id"] for p in pages for c in p] == [c["id"] for c in conversations]

    # Messages: the latest page first (oldest first inside it), next_cursor toward older ones.
    url = f"/v1/conversations/{conversations[0]['id']}/messages"
    t0 = datetime.now(UTC) - timedelta(hours=1)
    for i in range(5):
        at = (t0 + timedelta(minutes=i)).isoformat()
        body = {"role": "user", "content": f"m{i}", "created_at": at}
        await created(await api.post(url, json=body))
    pages = await walk(api, url, limit=2)
    assert [[msg["content"] for msg in p] for p in pages] == [["m3", "m4"], ["m1", "m2"], ["m0"]]

    every_merchant = [
        x["id"] for p in await walk(api, "/v1/merchants", limit=MAX_PAGE_SIZE) for x in p
    ]
    assert every_merchant == sorted(every_merchant) and m["id"] in every_merchant


async def test_bad_cursors_and_limits_are_422(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api)
    for _ in range(2):
        await created(
            await api.post(
                f"/v1/merchants/{m['id']}/users",
                json={"name": "U", "phone": unique_phone(), "user_type": "sales"},
            )
        )
    users_cursor = (await api.get(f"/v1/merchants/{m['id']}/users", params={"limit": 1})).json()[
        "next_cursor"
    ]
    assert users_cursor
    for url, cursor in (
        (f"/v1/merchants/{m['id']}/users", "not-a-cursor"),
        (f"/v1/merchants/{m['id']}/users", "e30"),  # "{}"
        (f"/v1/merchants/{m['id']}/documents", users_cursor),  # another list's
        ("/v1/notifications", users_cursor),
    ):
        response = await api.get(url, params={"cursor": cursor})
        assert paths(assert_envelope(response, 422, "invalid_input")) == {"cursor"}, url
    for url in ("/v1/merchants", "/v1/conversations", "/v1/notifications"):
        response = await api.get(url, params={"limit": MAX_PAGE_SIZE + 1})
        assert_envelope(response, 422)


# ---- merchants, users, documents, conversations --------------------------------------------


async def test_merchants_read_and_change(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api)
    assert (await api.get(f"/v1/merchants/{m['id']}")).json() == m
    changed = await api.patch(
        f"/v1/merchants/{m['id']}",
        json={"name": "Acme Outdoor", "timezone": "Europe/Madrid", "country": "ES"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["timezone"], body["country"]) == (
        "Acme Outdoor",
        "Europe/Madrid",
        "ES",
    )
    # With a country, the sender may be national.
    sender = await api.patch(f"/v1/merchants/{m['id']}", json={"whatsapp_sender": "612 34 56 78"})
    assert sender.json()["whatsapp_sender"] == "whatsapp:+34612345678"
    for bad, path in (
        ({}, "/"),
        ({"name": None}, "/name"),
        ({"timezone": "Mars/Base"}, "/timezone"),
        ({"default_language": "xx"}, "/default_language"),
        ({"surprise": 1}, "/surprise"),
    ):
        response = await api.patch(f"/v1/merchants/{m['id']}", json=bad)
        assert paths(assert_envelope(response, 422)) == {path}, bad
    assert_envelope(await api.get("/v1/merchants/2147483000"), 404, "not_found")
    assert_envelope(await api.patch("/v1/merchants/2147483000", json={"name": "x"}), 404)


async def test_users_read_change_and_deactivate(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api, country="US")
    base = f"/v1/merchants/{m['id']}/users"
    ana = await created(
        await api.post(base, json={"name": "Ana", "phone": unique_phone(), "user_type": "admin"})
    )
    bo = await created(
        await api.post(base, json={"name": "Bo", "phone": unique_phone(), "user_type": "sales"})
    )
    assert (await api.get(f"{base}/{ana['id']}")).json() == ana
    changed = await api.patch(
        f"{base}/{bo['id']}", json={"on_call": True, "phone": "(212) 555-0142"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["on_call"], changed.json()["phone"]) == (True, "+12125550142")
    taken = await api.patch(f"{base}/{bo['id']}", json={"phone": ana["phone"]})
    assert_envelope(taken, 409, "conflict")

    other = await new_merchant(api)
    # A user of another merchant under this merchant's path does not exist here.
    assert_envelope(await api.get(f"/v1/merchants/{other['id']}/users/{ana['id']}"), 404)

    gone = await api.delete(f"{base}/{bo['id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert (await api.delete(f"{base}/{bo['id']}")).status_code == 204  # idempotent
    departed = (await api.get(f"{base}/{bo['id']}")).json()
    assert departed["deactivated_at"] and departed["on_call"] is False
    assert_envelope(await api.patch(f"{base}/{bo['id']}", json={"name": "Back"}), 409)
    listed = [u["id"] for p in await walk(api, base) for u in p]
    assert listed == [ana["id"], bo["id"]]  # the departed user stays, for the history


async def test_documents_read_change_and_delete(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api)
    base = f"/v1/merchants/{m['id']}/documents"
    doc = await created(
        await api.post(base, json={"category": "UserQuestion", "title": "Hours?", "content": "9-5"})
    )
    assert (await api.get(f"{base}/{doc['id']}")).json() == doc
    changed = await api.patch(f"{base}/{doc['id']}", json={"content": "10-6"})
    assert changed.status_code == 200 and changed.json()["content"] == "10-6"
    assert changed.json()["updated_at"] >= doc["updated_at"]
    assert paths(assert_envelope(await api.patch(f"{base}/{doc['id']}", json={"title": " "}), 422))
    assert (await api.delete(f"{base}/{doc['id']}")).status_code == 204
    assert_envelope(await api.get(f"{base}/{doc['id']}"), 404, "not_found")
    assert_envelope(await api.delete(f"{base}/{doc['id']}"), 404, "not_found")


async def test_conversations_read_change_and_delete(api: httpx.AsyncClient) -> None:
    m = await new_merchant(api, default_language="pt-BR")
    body = {"merchant_id": m["id"], "channel": "whatsapp", "customer_phone": unique_phone()}
    c = await created(await api.post("/v1/conversations", json={**body, "language": "es"}))
    assert (await api.get(f"/v1/conversations/{c['id']}")).json() == c
    changed = await api.patch(f"/v1/conversations/{c['id']}", json={"language": "zh_hant"})
    assert changed.status_code == 200 and changed.json()["language"] == "zh-Hant"
    reset = await api.patch(f"/v1/conversations/{c['id']}", json={"language": None})
    assert reset.json()["language"] == "pt-BR"
    refused = await api.patch(f"/v1/conversations/{c['id']}", json={"customer_phone": "+1"})
    assert paths(assert_envelope(refused, 422)) == {"/customer_phone"}
    await created(
        await api.post(
            f"/v1/conversations/{c['id']}/messages", json={"role": "user", "content": "hi"}
        )
    )
    assert (await api.delete(f"/v1/conversations/{c['id']}")).status_code == 204
    assert_envelope(await api.get(f"/v1/conversations/{c['id']}"), 404, "not_found")
    assert_envelope(await api.get(f"/v1/conversations/{c['id']}/messages"), 404, "not_found")
    # The customer stays: a new conversation with the same phone reuses them.
    again = await created(await api.post("/v1/conversations", json=body))
    assert again["conversation_user_id"] == c["conversation_user_id"]


# ---- with the workflow: a departed admin, a deactivated merchant, kept history -----------


@pytest_asyncio.fixture
async def live(
    dev_env,  # type: ignore[no-untyped-def]
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(task_queue), temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel):
        async with client_for(app) as client:
            yield client


async def test_a_departed_admin_loses_the_right_to_answer_at_once(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any], db: SessionFactory
) -> None:
    """Both admins are asked; one leaves. Their answer to the running notification is 403
    (recorded as refused), the other admin's is taken and delivered as usual."""
    shop: Shop = await shop_factory()
    public = await ask(live, shop)
    sent = await until_sent(live, public)
    departed, staying = shop.admins
    assert {r["merchant_user_id"] for r in sent["recipients"]} >= {departed.id, staying.id}

    gone = await live.delete(f"/v1/merchants/{shop.merchant_id}/users/{departed.id}")
    assert gone.status_code == 204
    refused = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": departed.id, "answer": {"answer": "Closed on Sunday."}},
    )
    assert_envelope(refused, 403, "not_allowed")
    assert "deactivated" in refused.json()["error"]["message"]
    async with db() as session:
        attempts = (
            await session.scalars(
                select(NotificationAnswer).where(
                    NotificationAnswer.notification_id == int(public.removeprefix("NOTIF_"))
                )
            )
        ).all()
    assert [(a.answered_by, a.accepted) for a in attempts] == [(departed.id, False)]

    accepted = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": staying.id, "answer": {"answer": "Ten to four on Sunday."}},
    )
    assert accepted.status_code == 200, accepted.text
    done = await until_status(live, public, {"delivered", "delivery_failed"})
    assert done["status"] == "delivered", done
    # The history still names the departed admin as a recipient.
    assert departed.id in {r["merchant_user_id"] for r in done["recipients"]}


async def test_a_departed_admin_is_not_asked_again(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any]
) -> None:
    shop: Shop = await shop_factory()
    departed = shop.admins[0]
    assert (
        await live.delete(f"/v1/merchants/{shop.merchant_id}/users/{departed.id}")
    ).status_code == 204
    sent = await until_sent(live, await ask(live, shop))
    assert departed.id not in {r["merchant_user_id"] for r in sent["recipients"]}


async def test_a_deactivated_merchant_takes_no_new_notifications(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any]
) -> None:
    shop: Shop = await shop_factory()
    public = await ask(live, shop)
    await until_sent(live, public)
    # Its conversation and document history are kept while a notification refers to them.
    assert_envelope(await live.delete(f"/v1/conversations/{shop.conversation_id}"), 409)
    assert (await live.delete(f"/v1/merchants/{shop.merchant_id}")).status_code == 204
    merchant = (await live.get(f"/v1/merchants/{shop.merchant_id}")).json()
    assert merchant["deactivated_at"]
    response = await live.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": shop.conversation_id,
            "context": {"question": QUESTION},
        },
    )
    assert paths(assert_envelope(response, 409, "conflict")) == {"/conversation_id"}
    # The open one goes on: it can still be answered.
    answer = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": "Yes."}},
    )
    assert answer.status_code == 200, answer.text
