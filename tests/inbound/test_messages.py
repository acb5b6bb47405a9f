"""Inbound WhatsApp messages through the real API, dev server, worker and database: customers
refresh their 24-hour window; merchant users answer notifications by replying."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Conversation, Message, NotificationAnswer
from notifyflow.db.types import utcnow
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.inbound import ReplyOutcome
from notifyflow.models.notification import closure_notice
from notifyflow.models.workflow_io import AnswerSource
from tests.fixtures.ledger import settled
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, unique_phone
from tests.inbound.conftest import (
    Inbound,
    events,
    new_sid,
    sent_requests,
    stored,
    until,
)
from tests.workflows.helpers import wait_status


async def _conversation(db: SessionFactory, conversation_id: int) -> Conversation:
    async with db() as session:
        row = await session.get(Conversation, conversation_id)
        assert row is not None
        return row


async def _answers(db: SessionFactory, public: str) -> list[NotificationAnswer]:
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationAnswer)
                    .where(NotificationAnswer.notification_id == parse_notification_id(public))
                    .order_by(NotificationAnswer.id)
                )
            ).all()
        )


async def _texts(channel: FakeTwilioChannel, phone: str) -> list[str]:
    return [s.body for s in channel.to(phone) if s.kind == "text"]


async def test_a_customer_message_is_stored_and_opens_the_window_for_a_free_form_answer(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    # The customer has never written: an answer would have to be a template.
    shop: Shop = await shop_factory(last_inbound=None)
    before = utcnow()
    response, sid = await inbound.twilio.message(
        sender=shop.customer_phone, body="Hola, ¿abren el domingo?", profile="Lucía"
    )
    assert response.status_code == 200, response.text
    (message,) = await stored(db, sid)
    assert (message.conversation_id, message.role) == (shop.conversation_id, "user")
    assert message.content == "Hola, ¿abren el domingo?"
    assert message.other_data["profile_name"] == "Lucía"
    conversation = await _conversation(db, shop.conversation_id)
    assert conversation.last_inbound_at is not None and conversation.last_inbound_at >= before

    public = await inbound.ask(shop, "¿Abren el domingo?")
    admin = shop.admins[0]
    await sent_requests(db, public, 2)
    await inbound.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": admin.id, "answer": {"answer": "Sí, de 10 a 14."}},
    )
    row = await wait_status(db, public, {"delivered"})
    # Decided at send time from the window the message opened: free-form, not the template.
    assert row.delivery_method == "direct"
    (reply,) = channel.to(shop.customer_phone)
    assert reply.kind == "text" and "Sí, de 10 a 14." in reply.body


async def test_an_admin_reply_quoting_the_campaign_answers_it_and_the_admin_is_thanked(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    admin, other = shop.admins
    public = await inbound.ask(shop, "Do you open on Sundays?")
    requests = await sent_requests(db, public, 2)
    before = utcnow()

    response, sid = await inbound.twilio.message(
        sender=admin.phone,
        body="Yes, from 10 to 2 on Sundays",
        quoted=requests[admin.id].provider_message_id,
    )
    assert response.status_code == 200, response.text
    decision = await inbound.reply_decision(sid, record_as="admin_reply_accepted")
    assert decision.outcome is ReplyOutcome.accepted
    assert decision.notification_id == parse_notification_id(public)

    row = await wait_status(db, public, {"delivered"})
    assert row.answered_by == admin.id
    (to_customer,) = channel.to(shop.customer_phone)
    assert to_customer.kind == "text" and "Yes, from 10 to 2 on Sundays" in to_customer.body
    # The admin is thanked, free-form, in their own conversation.
    assert await _texts(channel, admin.phone) == [
        f"Thanks — your answer to {public} was accepted and is on its way to the customer."
    ]

    # The other admin is told it is closed; nobody else hears anything.
    async def closure() -> bool:
        return channel.to(other.phone)[-1].variables == {"1": closure_notice(public)}

    await until(closure, what="the closure notice")
    (answer,) = await _answers(db, public)
    assert answer.accepted and answer.source == AnswerSource.whatsapp.value
    assert answer.answered_by == admin.id
    # Their message is in their own conversation, which now has an open window.
    (message,) = await stored(db, sid)
    assert message.role == "user" and message.other_data["quoted_sid"] == (
        requests[admin.id].provider_message_id
    )
    own = await _conversation(db, message.conversation_id)
    assert own.merchant_user_id == admin.id
    assert own.last_inbound_at is not None and own.last_inbound_at >= before


async def test_an_admin_with_exactly_one_open_notification_answers_without_quoting(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    admin = shop.admins[1]
    public = await inbound.ask(shop, "Is the blue sofa in stock?")
    await sent_requests(db, public, 2)
    _, sid = await inbound.twilio.message(sender=admin.phone, body="Two left, ships Monday")
    decision = await inbound.reply_decision(sid)
    assert (decision.outcome, decision.notification_id) == (
        ReplyOutcome.accepted,
        parse_notification_id(public),
    )
    await wait_status(db, public, {"delivered"})
    assert "Two left, ships Monday" in channel.to(shop.customer_phone)[0].body
    assert (await _texts(channel, admin.phone))[0].startswith("Thanks — your answer to")


async def test_a_support_answer_naming_its_id_is_routed_and_the_id_is_not_forwarded(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    returns = shop.user("returns")
    public = await inbound.ask_support(shop, "The chair arrived broken, I want a refund")
    await sent_requests(db, public, 1)
    # A second, unrelated open notification: the id in the text decides, not "the one open".
    other = await inbound.ask(shop, "Do you ship to Peru?")
    await sent_requests(db, other, 2)
    _, sid = await inbound.twilio.message(
        sender=returns.phone, body=f"{public}: refund issued, a new chair leaves tomorrow"
    )
    decision = await inbound.reply_decision(sid)
    assert decision.outcome is ReplyOutcome.accepted, decision
    await wait_status(db, public, {"delivered"})
    (to_customer,) = channel.to(shop.customer_phone)
    assert "refund issued, a new chair leaves tomorrow" in to_customer.body
    assert "NOTIF_" not in to_customer.body
    (answer,) = await _answers(db, public)
    assert '"agent_response_to_customer"' in answer.answer_text


async def test_an_ambiguous_reply_is_asked_which_notification_it_is_about(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    admin = shop.admins[0]
    first = await inbound.ask(shop, "Do you open on Sundays?")
    second = await inbound.ask(shop, "Do you ship to Peru?")
    await sent_requests(db, first, 2)
    await sent_requests(db, second, 2)
    _, sid = await inbound.twilio.message(sender=admin.phone, body="Yes")
    decision = await inbound.reply_decision(sid, record_as="admin_reply_ambiguous")
    assert decision.outcome is ReplyOutcome.ambiguous and decision.notification_id is None
    (question,) = await _texts(channel, admin.phone)
    assert question.startswith(
        "Which notification is this about? Reply to its message or include its id, e.g."
    )
    assert first in question and second in question
    for public in (first, second):
        assert (await wait_status(db, public, {"requested"})).answered_by is None
        assert await _answers(db, public) == []
    # The question is in the admin's conversation (no ledger row: it is about no notification).
    (message,) = await stored(db, sid)
    async with db() as session:
        replies = (
            await session.scalars(
                select(Message).where(
                    Message.conversation_id == message.conversation_id,
                    Message.role == "assistant",
                )
            )
        ).all()
    assert [m.content for m in replies if m.other_data.get("kind") == "admin_reply"] == [question]
    assert await events(db, f"inbound:{sid}:reply") == [f"inbound:{sid}:reply"]


async def test_a_second_admin_replying_after_the_first_is_told_it_was_already_answered(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    first, second = shop.admins
    public = await inbound.ask(shop)
    requests = await sent_requests(db, public, 2)
    _, sid = await inbound.twilio.message(
        sender=first.phone, body="Yes, 10 to 2", quoted=requests[first.id].provider_message_id
    )
    assert (await inbound.reply_decision(sid)).outcome is ReplyOutcome.accepted
    _, late = await inbound.twilio.message(
        sender=second.phone, body="Yes, 9 to 5", quoted=requests[second.id].provider_message_id
    )
    decision = await inbound.reply_decision(late)
    assert (decision.outcome, decision.reason_code) == (ReplyOutcome.refused, "already_answered")
    # (Their closure notice may come as text too: by then they had written, so their window
    # was open.)
    texts = await _texts(channel, second.phone)
    already = f"{public} was already answered, so your reply was not sent to the customer."
    assert texts.count(already) == 1
    assert set(texts) <= {already, closure_notice(public)}
    await wait_status(db, public, {"delivered"})
    (to_customer,) = channel.to(shop.customer_phone)
    assert "10 to 2" in to_customer.body
    answers = await _answers(db, public)
    assert [(a.answered_by, a.accepted) for a in answers] == [(first.id, True), (second.id, False)]
    assert answers[1].reason_code == "already_answered" and answers[1].source == "whatsapp"


async def test_what_was_wrong_is_said_in_plain_words(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    sales = shop.user("sales")
    admin = shop.admins[0]
    public = await inbound.ask(shop)
    await sent_requests(db, public, 2)
    # Not asked (a question goes to the admins) and not an admin: refused.
    _, sid = await inbound.twilio.message(sender=sales.phone, body=f"{public} we open at 9")
    decision = await inbound.reply_decision(sid)
    assert (decision.outcome, decision.reason_code) == (ReplyOutcome.refused, "not_allowed")
    assert await _texts(channel, sales.phone) == [
        f"You cannot answer {public}: it was not sent to you."
    ]
    # Only the id, no answer in it.
    _, sid = await inbound.twilio.message(sender=admin.phone, body=f"{public}")
    decision = await inbound.reply_decision(sid)
    assert decision.outcome is ReplyOutcome.unreadable
    assert (await _texts(channel, admin.phone))[-1].startswith(
        f"Your message could not be read as an answer to {public}."
    )
    # An id that does not exist.
    _, sid = await inbound.twilio.message(sender=admin.phone, body="NOTIF_2147483000 yes")
    decision = await inbound.reply_decision(sid)
    assert (decision.outcome, decision.reason_code) == (ReplyOutcome.refused, "not_found")
    assert (await _texts(channel, admin.phone))[-1] == "There is no notification NOTIF_2147483000."
    assert (await wait_status(db, public, {"requested"})).status == "requested"


async def test_a_replayed_webhook_stores_one_message_and_gives_one_answer(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    admin = shop.admins[0]
    public = await inbound.ask(shop)
    requests = await sent_requests(db, public, 2)
    sid = new_sid()
    send = {
        "sender": admin.phone,
        "body": "Yes, 10 to 2",
        "sid": sid,
        "quoted": requests[admin.id].provider_message_id,
    }
    # Twilio's retry racing the original, then once more later.
    responses = await asyncio.gather(inbound.twilio.message(**send), inbound.twilio.message(**send))
    assert [r.status_code for r, _ in responses] == [200, 200]
    assert (await inbound.reply_decision(sid)).outcome is ReplyOutcome.accepted
    await wait_status(db, public, {"delivered"})
    again, _ = await inbound.twilio.message(**send)
    assert again.status_code == 200
    # A second answer or reply would come from a workflow on this queue: wait for all of them
    # to close and for nothing to be in flight, then count.
    await settled(
        inbound.client,
        [public],
        twilio=channel.fake,
        task_queue=inbound.settings.temporal_task_queue,
    )
    assert len(await stored(db, sid)) == 1
    assert [a.accepted for a in await _answers(db, public)] == [True]
    assert len(channel.to(shop.customer_phone)) == 1
    assert len(await _texts(channel, admin.phone)) == 1


async def test_an_unknown_sender_gets_200_and_nothing_is_stored(
    inbound: Inbound, db: SessionFactory, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    window = (await _conversation(db, shop.conversation_id)).last_inbound_at
    response, sid = await inbound.twilio.message(sender=unique_phone(), body="Who is this?")
    assert response.status_code == 200
    assert await stored(db, sid) == [] and await events(db, sid) == []
    # A known customer writing to a number that is no merchant's.
    response, sid = await inbound.twilio.message(
        sender=shop.customer_phone, body="Hello", to="whatsapp:+19990000001"
    )
    assert response.status_code == 200
    assert await stored(db, sid) == [] and await events(db, sid) == []
    assert (await _conversation(db, shop.conversation_id)).last_inbound_at == window


async def test_an_answer_written_as_json_keeps_its_resolution_notes_internal(
    inbound: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory()
    returns = shop.user("returns")
    public = await inbound.ask_support(shop, "The chair arrived broken, I want a refund")
    requests = await sent_requests(db, public, 1)
    body = (
        '{"agent_response_to_customer": "A new chair ships tomorrow", '
        '"resolution_notes": "Supplier fault, claim 88"}'
    )
    _, sid = await inbound.twilio.message(
        sender=returns.phone, body=body, quoted=requests[returns.id].provider_message_id
    )
    assert (await inbound.reply_decision(sid)).outcome is ReplyOutcome.accepted
    await wait_status(db, public, {"delivered"})
    (to_customer,) = channel.to(shop.customer_phone)
    assert "A new chair ships tomorrow" in to_customer.body
    assert "Supplier" not in to_customer.body and "resolution" not in to_customer.body
    (answer,) = await _answers(db, public)
    assert "Supplier fault, claim 88" in answer.answer_text  # kept, for the merchant only


async def test_a_departed_admins_reply_answers_nothing(
    inbound: Inbound, db: SessionFactory, shop_factory: Any
) -> None:
    """Issue 18: once deactivated, an admin's WhatsApp reply is a stranger's — not matched to
    the user, nor to the user's own conversation — even on a notification that asked them."""
    from notifyflow import directory

    shop: Shop = await shop_factory()
    admin = shop.admins[1]
    public = await inbound.ask(shop, "Is the red chair in stock?")
    await sent_requests(db, public, 2)
    await directory.deactivate_user(db, shop.merchant_id, admin.id)
    response, sid = await inbound.twilio.message(sender=admin.phone, body="Yes, three left")
    assert response.status_code == 200
    assert await stored(db, sid) == [] and await events(db, sid) == []
    assert await _answers(db, public) == []
