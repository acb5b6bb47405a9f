"""No one answers where they do not belong; the bearer token guards the API; racing answers
give exactly one accepted answer and one customer message."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from notifyflow.api.app import create_app
from notifyflow.config import Settings
from notifyflow.db.tables import Notification
from tests.api.conftest import assert_envelope, client_for
from tests.fixtures.ledger import settled
from tests.security.conftest import LiveStack
from tests.workflows.helpers import wait_status


async def _open(live: LiveStack, conversation_id: int, **context: str) -> str:
    kind = (
        "user_support_request" if "support_request_reason" in context else "user_question_request"
    )
    r = await live.http.post(
        "/v1/notifications",
        json={"type": kind, "conversation_id": conversation_id, "context": context},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["notification_id"])


async def _recipients_known(live: LiveStack, public: str) -> None:
    for _ in range(400):
        r = await live.http.get(f"/v1/notifications/{public}")
        if r.json()["recipients"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("recipients never recorded")


async def test_another_merchants_admin_cannot_answer(live: LiveStack, shop_factory) -> None:
    shop, other = await shop_factory(), await shop_factory()
    public = await _open(live, shop.conversation_id, question="Open on holidays?")
    await _recipients_known(live, public)
    r = await live.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": other.admins[0].id, "answer": {"answer": "No"}},
    )
    assert_envelope(r, 403, "not_allowed")
    body = (await live.http.get(f"/v1/notifications/{public}")).json()
    assert body["status"] == "requested"
    assert [(a["accepted"], a["reason_code"]) for a in body["answers"]] == [(False, "not_allowed")]
    await live.http.post(f"/v1/notifications/{public}/close", json={})


async def test_a_merchant_user_who_was_not_asked_cannot_answer(
    live: LiveStack, shop_factory
) -> None:
    shop = await shop_factory()
    public = await _open(live, shop.conversation_id, support_request_reason="bulk order discount")
    await _recipients_known(live, public)
    r = await live.http.post(
        f"/v1/notifications/{public}/answer",
        json={
            "answered_by": shop.user("returns").id,
            "answer": {"agent_response_to_customer": "10%"},
        },
    )
    assert_envelope(r, 403, "not_allowed")
    # An unknown user id (ids are guessable) is refused the same way.
    r = await live.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": 2_000_000_000, "answer": {"agent_response_to_customer": "x"}},
    )
    assert_envelope(r, 403, "not_allowed")
    await live.http.post(f"/v1/notifications/{public}/close", json={})


async def test_notification_routes_need_the_bearer_token(dev_env, db, task_queue, shop_factory):
    shop = await shop_factory()
    settings = Settings(TEMPORAL_TASK_QUEUE=task_queue, NOTIFYFLOW_API_TOKEN="tok-123")
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    body = {
        "type": "user_question_request",
        "conversation_id": shop.conversation_id,
        "context": {"question": "x"},
    }
    async with client_for(app) as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "tok-123"}):
            r = await http.post("/v1/notifications", json=body, headers=headers)
            assert_envelope(r, 401)
            r = await http.post(
                "/v1/notifications/NOTIF_1/answer",
                json={"answered_by": 1, "answer": {"answer": "x"}},
                headers=headers,
            )
            assert_envelope(r, 401)
            assert (await http.get("/v1/notifications", headers=headers)).status_code == 401
        assert (await http.get("/healthz")).status_code == 200
    async with db() as session:
        count = await session.scalar(
            select(func.count(Notification.id)).where(
                Notification.conversation_id == shop.conversation_id
            )
        )
    assert count == 0


async def test_fifty_concurrent_answers_accept_exactly_one(
    live: LiveStack, db, shop_factory
) -> None:
    shop = await shop_factory(admins=5)
    public = await _open(live, shop.conversation_id, question="Who wins?")
    await _recipients_known(live, public)
    responses = await asyncio.gather(
        *(
            live.http.post(
                f"/v1/notifications/{public}/answer",
                json={"answered_by": shop.admins[i % 5].id, "answer": {"answer": f"answer {i}"}},
            )
            for i in range(50)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 49
    await wait_status(db, public, {"delivered"})
    # Nothing can still send (the workflow and all on this queue closed, nothing in flight):
    # count.
    await settled(live.client, [public], twilio=live.channel.fake, task_queue=live.task_queue)
    assert len(live.channel.to(shop.customer_phone)) == 1
    body = (await live.http.get(f"/v1/notifications/{public}")).json()
    assert [a["accepted"] for a in body["answers"]].count(True) == 1
