"""Twilio status callbacks: the delivery ledger follows them (never backward); a free-form answer
refused after the fact with 63016 becomes exactly one template; other failures mark the
notification delivery_failed and tell the admin who answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.service import RPCError

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Delivery, Notification
from notifyflow.inbound import status as inbound_status
from tests.fakes.twilio_server import FakeTwilio
from tests.fixtures.ledger import settled
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop
from tests.inbound.conftest import (
    PUBLIC_URL,
    STATUS,
    Inbound,
    deliveries,
    events,
    new_sid,
    sent_requests,
)
from tests.workflows.helpers import wait_status


async def _row(db: SessionFactory, delivery_id: int) -> Delivery:
    async with db() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        return row


async def _answered(inbound: Inbound, db: SessionFactory, shop: Shop, text: str) -> str:
    """A question answered through the API and delivered; its public id."""
    public = await inbound.ask(shop)
    await sent_requests(db, public, 2)
    response = await inbound.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": text}},
    )
    assert response.status_code == 200, response.text
    await wait_status(db, public, {"delivered"})
    return public


async def test_status_callbacks_move_a_delivery_forward_never_back(
    inbound: Inbound, db: SessionFactory, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    public = await inbound.ask(shop)
    requests = await sent_requests(db, public, 2)
    first, second = (requests[a.id] for a in shop.admins)
    assert first.status == "sent" and first.provider_message_id

    for status, expected in [
        ("delivered", "delivered"),
        ("sent", "delivered"),  # late: ignored
        ("queued", "delivered"),
        ("read", "read"),
        ("delivered", "read"),  # a replay: dropped
    ]:
        response = await inbound.twilio.status(first.provider_message_id, status)
        assert response.status_code == 200, response.text
        assert (await _row(db, first.id)).status == expected, status

    # An admin's request that failed records the error; admins have no fallback.
    response = await inbound.twilio.status(second.provider_message_id or "", "undelivered", "63005")
    assert response.status_code == 200
    row = await _row(db, second.id)
    assert (row.status, row.error_code) == ("undelivered", "63005")
    assert "63005" in (row.error_message or "")
    assert (await wait_status(db, public, {"requested"})).status == "requested"
    # One event per status seen; the replayed "delivered" added none.
    assert sorted(await events(db, first.provider_message_id)) == sorted(
        f"twilio:status:{first.provider_message_id}:{s}"
        for s in ("delivered", "sent", "queued", "read")
    )


async def test_a_status_for_a_message_that_is_not_ours_is_acknowledged(
    inbound: Inbound, db: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbound_status, "STATUS_MATCH_WAIT", 0.2)
    sid = new_sid()
    response = await inbound.twilio.status(sid, "delivered")
    assert response.status_code == 200
    # Unknown statuses (an inbound "received") are acknowledged and ignored too.
    response = await inbound.twilio.status(sid, "received")
    assert response.status_code == 200
    assert await events(db, sid) == []


async def test_63016_after_a_free_form_answer_sends_exactly_one_template(
    twilio_inbound: Inbound, db: SessionFactory, twilio: FakeTwilio, shop_factory: Any
) -> None:
    env = twilio_inbound
    shop: Shop = await shop_factory()
    public = await _answered(env, db, shop, "We open at 10 on Sundays")
    (free_form,) = twilio.accepted(to=shop.customer_phone)
    assert free_form["kind"] == "text"
    # The real SDK asked Twilio to call the app's status webhook back.
    (sent,) = [e for e in twilio.sends() if e["sid"] == free_form["sid"]]
    assert sent["fields"]["StatusCallback"] == f"{PUBLIC_URL}{STATUS}"

    # Twilio reports the free-form as failed: the window had closed after all. Twice at once,
    # then again later, and once more as "undelivered".
    sid = free_form["sid"]
    responses = await asyncio.gather(
        env.twilio.status(sid, "failed", "63016"), env.twilio.status(sid, "failed", "63016")
    )
    assert [r.status_code for r in responses] == [200, 200]
    result = await env.fallback_result(f"{public}:fallback", record_as="fallback_template")
    assert (result.status, result.method, result.sent) == ("delivered", "campaign", True)
    for status in ("failed", "undelivered"):
        assert (await env.twilio.status(sid, status, "63016")).status_code == 200
    # A second template would come from a (second) fallback workflow: once every workflow of
    # the notification and of this queue is closed and nothing is in flight, count.
    await settled(
        env.client,
        [public, f"{public}:fallback"],
        twilio=twilio,
        optional=[f"{public}:delivery-failed"],
        task_queue=env.settings.temporal_task_queue,
    )

    templates = twilio.accepted(to=shop.customer_phone, kind="template")
    assert len(templates) == 1
    assert templates[0]["variables"] == {"1": "we open at 10 on Sundays"}
    rows = await deliveries(db, public, "answer")
    direct, template = rows
    assert (direct.method, direct.status, direct.error_code) == ("direct", "failed", "63016")
    assert (template.method, template.status) == ("campaign", "sent")
    assert template.idempotency_key == f"{public}:answer:customer:template"
    view = (await env.http.get(f"/v1/notifications/{public}")).json()
    assert view["status"] == "delivered"
    assert view["delivery"]["method"] == "campaign"
    assert view["delivery"]["provider_message_id"] == templates[0]["sid"]


async def test_a_permanent_failure_marks_the_notification_and_tells_the_admin(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    admin = shop.admins[0]
    public = await _answered(inbound, db, shop, "We open at 10 on Sundays")
    (answer,) = await deliveries(db, public, "answer")
    assert answer.provider_message_id
    told_before = len(channel.to(admin.phone))

    response = await inbound.twilio.status(answer.provider_message_id, "undelivered", "63014")
    assert response.status_code == 200
    result = await inbound.fallback_result(
        f"{public}:delivery-failed", record_as="fallback_delivery_failed"
    )
    assert result.status == "delivery_failed" and "63014" in (result.reason or "")
    row = await wait_status(db, public, {"delivery_failed"})
    assert row.failure_reason == "63014: the customer blocked the business or opted out"
    told = channel.to(admin.phone)[told_before:]
    assert len(told) == 1
    assert f"Your answer to {public} could not be delivered to the customer" in told[0].body
    # The customer got nothing more: no template was tried for a block.
    assert [s.kind for s in channel.to(shop.customer_phone)] == ["text"]
    view = (await inbound.http.get(f"/v1/notifications/{public}")).json()
    assert view["status"] == "delivery_failed" and "63014" in view["delivery"]["failure_reason"]


async def test_a_63016_that_overtakes_the_delivery_waits_for_it(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    """Twilio can call back before the delivery activity has written its outcome: the fallback
    waits for that outcome instead of racing it."""
    shop: Shop = await shop_factory()
    public = await _answered(inbound, db, shop, "We open at 10 on Sundays")
    (answer,) = await deliveries(db, public, "answer")
    n = answer.notification_id
    async with db() as session:  # as if the delivery were still finishing
        row = await session.get(Notification, n)
        assert row is not None
        row.status = "answered"
        await session.commit()
    response = await inbound.twilio.status(answer.provider_message_id or "", "failed", "63016")
    assert response.status_code == 200
    # The fallback saw the delivery unfinished and backed off: its activity is on a second
    # attempt (it found "answered" at least once) and nothing was sent meanwhile.
    await _until_retrying(inbound, f"{public}:fallback")
    assert [s.kind for s in channel.to(shop.customer_phone)] == ["text"]
    async with db() as session:
        row = await session.get(Notification, n)
        assert row is not None
        row.status = "delivered"
        await session.commit()
    result = await inbound.fallback_result(f"{public}:fallback")
    assert (result.method, result.sent) == ("campaign", True)
    assert [s.kind for s in channel.to(shop.customer_phone)] == ["text", "template"]


async def _until_retrying(inbound: Inbound, workflow_id: str, timeout: float = 30.0) -> None:
    """Until the workflow's pending activity has failed at least once and is retrying."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            description = await inbound.client.get_workflow_handle(workflow_id).describe()
            pending = description.raw_description.pending_activities
            if pending and pending[0].attempt >= 2:
                return
        except RPCError:
            pass  # not started yet
        assert asyncio.get_running_loop().time() < deadline, f"{workflow_id} never retried"
        await asyncio.sleep(0.05)
