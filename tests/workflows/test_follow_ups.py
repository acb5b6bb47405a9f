"""The customer's follow-ups and withdrawal (DESIGN §8) on a real dev server: a follow-up joins
the notification and reaches every recipient once (its own ledger key, a template outside the
admin's window); a withdrawal closes it with reason `withdrawn` and tells them; both are 409
once it is answered or closed."""

from __future__ import annotations

import pytest

from notifyflow import starter
from notifyflow.db.seed import default_content_sid
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import Campaign
from tests.fixtures.lifecycle import running_worker, settings_for
from tests.workflows.helpers import result, until

QUESTION = {"question": "Do you ship to Canada?"}


async def _open(dev_env, db, task_queue, shop):  # type: ignore[no-untyped-def]
    view = await starter.request_notification(
        dev_env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context=dict(QUESTION),
        settings=settings_for(task_queue),
    )
    return view.notification_id


async def test_a_follow_up_reaches_every_recipient_once_and_joins_the_timeline(
    dev_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory()
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _open(dev_env, db, task_queue, shop)
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        first = await starter.add_customer_message(
            dev_env.client, db, public, "  It is for a gift, by Friday please.  "
        )
        second = await starter.add_customer_message(dev_env.client, db, public, "Blue one.")
        assert (first.seq, second.seq) == (1, 2)
        await until(lambda: all(len(channel.to(a.phone)) == 3 for a in shop.admins))
        await starter.answer_notification(
            dev_env.client, db, public, answered_by=shop.admins[0].id, answer={"answer": "Yes"}
        )
        await result(dev_env.client, public)
        with pytest.raises(NotificationError) as late:
            await starter.add_customer_message(dev_env.client, db, public, "And a card?")
        assert late.value.code is RefusalCode.already_answered and late.value.http_status == 409
    follow_up_sid = default_content_sid(Campaign.notification_follow_up, "en")
    for admin in shop.admins:
        forwarded = [s for s in channel.to(admin.phone) if s.content_sid == follow_up_sid]
        # Their own window is closed (they never wrote): the follow-up template, once each.
        assert [s.variables for s in forwarded] == [
            {"1": public, "2": "It is for a gift, by Friday please."},
            {"1": public, "2": "Blue one."},
        ]
        assert [s.key for s in forwarded] == [
            f"{public}:customer_message-1:{admin.id}",
            f"{public}:customer_message-2:{admin.id}",
        ]
    view = await starter.get_notification(db, public)
    assert [m["text"] for m in view.context["customer_messages"]] == [
        "It is for a gift, by Friday please.",
        "Blue one.",
    ]
    timeline = await starter.notification_timeline(db, public)
    assert [e.detail for e in timeline if e.event == "customer message"] == [
        "#1: It is for a gift, by Friday please.",
        "#2: Blue one.",
    ]


async def test_a_withdrawal_closes_it_and_tells_the_recipients(
    dev_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory()
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _open(dev_env, db, task_queue, shop)
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        view = await starter.close_notification(dev_env.client, db, public, reason="withdrawn")
        assert view.status == "closed" and view.close_reason == "withdrawn"
        with pytest.raises(NotificationError) as refused:
            await starter.add_customer_message(dev_env.client, db, public, "Never mind")
        assert refused.value.code is RefusalCode.closed
    for admin in shop.admins:
        told = channel.to(admin.phone)[-1]
        assert told.variables == {
            "1": f"Notification {public} was withdrawn by the customer: no answer is needed."
        }


async def test_a_follow_up_with_no_text_is_refused_before_anything(dev_env, db) -> None:
    with pytest.raises(NotificationError) as refused:
        await starter.add_customer_message(dev_env.client, db, "NOTIF_1", "   ")
    assert refused.value.code is RefusalCode.invalid_input
    with pytest.raises(NotificationError) as missing:
        await starter.add_customer_message(dev_env.client, db, "NOTIF_2147483000", "Hello")
    assert missing.value.code is RefusalCode.not_found


async def test_the_same_message_id_again_is_the_same_follow_up(
    dev_env, db, task_queue, channel, shop_factory
) -> None:
    """A client retrying after a timeout sends the same message_id: one follow-up, one send
    to each recipient."""
    shop = await shop_factory()
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _open(dev_env, db, task_queue, shop)
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        first = await starter.add_customer_message(
            dev_env.client, db, public, "Gift wrap, please.", message_id="voyager-msg-77"
        )
        again = await starter.add_customer_message(
            dev_env.client, db, public, "Gift wrap, please.", message_id="voyager-msg-77"
        )
        other = await starter.add_customer_message(
            dev_env.client, db, public, "And a card.", message_id="voyager-msg-78"
        )
        assert (first.seq, again.seq, other.seq) == (1, 1, 2)
        await until(lambda: all(len(channel.to(a.phone)) == 3 for a in shop.admins))
        await starter.close_notification(dev_env.client, db, public)
    follow_up_sid = default_content_sid(Campaign.notification_follow_up, "en")
    for admin in shop.admins:
        forwarded = [s for s in channel.to(admin.phone) if s.content_sid == follow_up_sid]
        assert [s.variables["2"] for s in forwarded if s.variables] == [
            "Gift wrap, please.",
            "And a card.",
        ]
