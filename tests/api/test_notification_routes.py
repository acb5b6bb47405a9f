"""Notification routes against the real workflow on the real dev server, with a recording
channel and the offline AI (DESIGN §4: status codes, envelope, idempotency)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio

from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from tests.api.conftest import assert_envelope, client_for, paths
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for

QUESTION = "What are your business hours on Sunday?"


@pytest_asyncio.fixture
async def api(
    dev_env,
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,  # type: ignore[no-untyped-def]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API wired to the dev server, with a worker on this test's own task queue."""
    app = create_app(settings_for(task_queue), temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel):
        async with client_for(app) as client:
            yield client


@pytest_asyncio.fixture
async def shop(shop_factory: Callable[..., Any]) -> Shop:
    made: Shop = await shop_factory()
    return made


async def ask(api: httpx.AsyncClient, shop: Shop, **fields: Any) -> str:
    body = {
        "type": "user_question_request",
        "conversation_id": shop.conversation_id,
        "context": {"question": QUESTION},
        **fields,
    }
    response = await api.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"notification_id", "status"}
    assert accepted["status"] == "requested"
    assert response.headers["location"] == f"/v1/notifications/{accepted['notification_id']}"
    public: str = accepted["notification_id"]
    return public


async def until_sent(api: httpx.AsyncClient, public: str, timeout: float = 20.0) -> dict[str, Any]:
    """The notification once its recipients are recorded (the workflow has opened it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (await api.get(f"/v1/notifications/{public}")).json()
        if body["recipients"]:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


async def until_status(
    api: httpx.AsyncClient, public: str, statuses: set[str], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (await api.get(f"/v1/notifications/{public}")).json()
        if body["status"] in statuses:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


NOTIFICATION_FIELDS = {
    "notification_id",
    "type",
    "status",
    "merchant_id",
    "conversation_id",
    "context",
    "answer_schema",
    "allow_multiple_answers",
    "recipients",
    "answers",
    "delivery",
    "created_at",
    "updated_at",
    "answered_at",
    "closed_at",
}


async def test_request_get_answer_and_delivery(api: httpx.AsyncClient, shop: Shop) -> None:
    public = await ask(api, shop)
    body = await until_sent(api, public)
    assert NOTIFICATION_FIELDS <= set(body)
    assert body["type"] == "user_question_request" and body["status"] == "requested"
    assert body["merchant_id"] == shop.merchant_id
    assert body["conversation_id"] == shop.conversation_id
    assert body["context"]["question"] == QUESTION
    assert body["allow_multiple_answers"] is False
    assert {r["merchant_user_id"] for r in body["recipients"]} == {a.id for a in shop.admins}
    assert {"method", "channel", "status", "provider_message_id"} <= set(body["delivery"])

    response = await api.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": "10:00 to 16:00."}},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"notification_id": public, "status": "answered", "accepted": True}

    done = await until_status(api, public, {"delivered", "delivery_failed"})
    assert done["status"] == "delivered" and done["answered_at"]
    assert [a["accepted"] for a in done["answers"]] == [True]

    # A single-answer notification takes no second answer, in either form.
    response = await api.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[1].id, "answer_json": '{"answer": "Closed."}'},
    )
    assert_envelope(response, 409, "already_answered")
    assert_envelope(await api.post(f"/v1/notifications/{public}/close", json={}), 409)


async def test_idempotency_key_returns_the_same_notification(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    key = f"voyager-{uuid.uuid4().hex}"
    first = await ask(api, shop, idempotency_key=key)
    second = await ask(api, shop, idempotency_key=key)
    assert first == second
    other = await ask(api, shop, idempotency_key=f"{key}-other")
    assert other != first


async def test_malformed_ids_are_400(api: httpx.AsyncClient) -> None:
    for bad in ("NOTIF_0", "NOTIF_01", "NOTIF_2147483648", "notif_1", "12", "NOTIF_1x", "NOTIF_-1"):
        assert_envelope(await api.get(f"/v1/notifications/{bad}"), 400, "malformed_id")
        response = await api.post(
            f"/v1/notifications/{bad}/answer", json={"answered_by": 1, "answer": {"answer": "x"}}
        )
        assert_envelope(response, 400, "malformed_id")
        assert_envelope(await api.post(f"/v1/notifications/{bad}/close"), 400, "malformed_id")
    # Surrounding whitespace is ignored (DESIGN §2): an unknown but well-formed id.
    assert_envelope(await api.get("/v1/notifications/%20NOTIF_2147483000%20"), 404, "not_found")


async def test_unknown_notification_or_conversation_is_404(
    api: httpx.AsyncClient, shop: Shop
) -> None:
    unknown = "NOTIF_2147483000"
    assert_envelope(await api.get(f"/v1/notifications/{unknown}"), 404, "not_found")
    response = await api.post(
        f"/v1/notifications/{unknown}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": "x"}},
    )
    assert_envelope(response, 404, "not_found")
    assert_envelope(
        await api.post(f"/v1/notifications/{unknown}/close", json={"reason": "x"}), 404, "not_found"
    )
    response = await api.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": 2147483000,
            "context": {"question": QUESTION},
        },
    )
    assert_envelope(response, 404, "not_found")


async def test_request_validation_is_422_with_paths(api: httpx.AsyncClient, shop: Shop) -> None:
    base = {"conversation_id": shop.conversation_id}
    response = await api.post(
        "/v1/notifications",
        json={**base, "type": "user_complaint", "context": {"question": QUESTION}},
    )
    assert paths(assert_envelope(response, 422, "unknown_type")) == {"/type"}

    response = await api.post(
        "/v1/notifications",
        json={**base, "type": "user_question_request", "context": {"questions": QUESTION}},
    )
    assert paths(assert_envelope(response, 422, "missing_field")) == {"/context/question"}

    response = await api.post(
        "/v1/notifications",
        json={**base, "type": "user_support_request", "context": {"question": QUESTION}},
    )
    assert paths(assert_envelope(response, 422, "missing_field")) == {
        "/context/support_request_reason"
    }

    response = await api.post(
        "/v1/notifications", json={"type": "user_question_request", "context": "What?"}
    )
    assert paths(assert_envelope(response, 422, "invalid_input")) == {
        "/conversation_id",
        "/context",
    }

    response = await api.get("/v1/notifications", params={"status": "pending", "type": "x"})
    assert paths(assert_envelope(response, 422, "invalid_input")) == {"status", "type"}


async def test_answer_validation_is_422_with_paths(api: httpx.AsyncClient, shop: Shop) -> None:
    public = await ask(api, shop)
    await until_sent(api, public)
    url = f"/v1/notifications/{public}/answer"
    admin = shop.admins[0].id

    response = await api.post(url, json={"answered_by": admin, "answer": {"reply": "x"}})
    details = assert_envelope(response, 422)
    assert response.json()["error"]["code"] in ("missing_field", "schema_mismatch")
    assert "/answer" in paths(details)

    response = await api.post(url, json={"answered_by": admin, "answer": {"answer": 42}})
    assert paths(assert_envelope(response, 422, "schema_mismatch")) == {"/answer"}

    response = await api.post(url, json={"answered_by": admin, "answer_json": "10 to 4"})
    assert_envelope(response, 422, "not_json")

    response = await api.post(
        url,
        json={"answered_by": admin, "answer": {"answer": "x"}, "answer_json": '{"answer": "x"}'},
    )
    one_of = {"/answer", "/answer_json", "/template"}
    assert paths(assert_envelope(response, 422, "invalid_input")) == one_of
    response = await api.post(url, json={"answered_by": admin})
    assert paths(assert_envelope(response, 422, "invalid_input")) == one_of
    response = await api.post(url, json={"answer": {"answer": "x"}})
    assert paths(assert_envelope(response, 422, "invalid_input")) == {"/answered_by"}

    # Refused attempts are kept in the history; the notification is still open.
    body = (await api.get(f"/v1/notifications/{public}")).json()
    assert body["status"] == "requested"
    assert body["answers"] and not any(a["accepted"] for a in body["answers"])


async def test_answerer_not_allowed_is_403(
    api: httpx.AsyncClient, shop: Shop, shop_factory: Callable[..., Any]
) -> None:
    public = await ask(api, shop)
    await until_sent(api, public)
    stranger = (await shop_factory()).admins[0].id  # an admin, of another merchant
    salesperson = shop.user("sales").id  # same merchant, but neither admin nor recipient
    for user in (stranger, salesperson, 2147483000):
        response = await api.post(
            f"/v1/notifications/{public}/answer",
            json={"answered_by": user, "answer": {"answer": "x"}},
        )
        assert_envelope(response, 403, "not_allowed")
    assert (await api.get(f"/v1/notifications/{public}")).json()["status"] == "requested"


async def test_close_then_list_with_filters(api: httpx.AsyncClient, shop: Shop) -> None:
    open_one = await ask(api, shop)
    to_close = await ask(api, shop)
    await until_sent(api, to_close)

    response = await api.post(
        f"/v1/notifications/{to_close}/close", json={"reason": "Handled by phone"}
    )
    assert response.status_code == 200, response.text
    closed = response.json()
    assert NOTIFICATION_FIELDS <= set(closed)
    assert closed["notification_id"] == to_close and closed["status"] == "closed"
    assert closed["closed_at"]
    assert_envelope(await api.post(f"/v1/notifications/{to_close}/close"), 409, "closed")
    response = await api.post(
        f"/v1/notifications/{to_close}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": "late"}},
    )
    assert_envelope(response, 409, "closed")

    mine = {"merchant_id": shop.merchant_id}
    listed = (await api.get("/v1/notifications", params=mine)).json()["items"]
    assert [n["notification_id"] for n in listed] == [to_close, open_one]
    requested = (await api.get("/v1/notifications", params={**mine, "status": "requested"})).json()[
        "items"
    ]
    assert [n["notification_id"] for n in requested] == [open_one]
    by_type = (
        await api.get("/v1/notifications", params={**mine, "type": "user_support_request"})
    ).json()
    assert by_type == {"items": [], "next_cursor": None}
