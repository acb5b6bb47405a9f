"""The free-form answer is composed for the conversation so far: the customer's latest turns,
oldest first, reach the AI with the delivery (read with the delivery's one load)."""

from __future__ import annotations

import uuid
from typing import Any

from notifyflow import starter
from notifyflow.ai.base import ChatTurn
from notifyflow.ai.offline import OfflineProvider
from notifyflow.inbound.forms import InboundMessage
from notifyflow.inbound.messages import receive_message
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for
from tests.workflows.helpers import result, until

SENDER = "+14155550100"


class RecordingAI(OfflineProvider):
    """The offline provider, keeping what each reply was composed from."""

    def __init__(self) -> None:
        self.histories: list[list[ChatTurn]] = []

    async def compose_reply(self, history: list[ChatTurn], answer: str, language: str) -> str:
        self.histories.append(list(history))
        return await super().compose_reply(history, answer, language)


async def test_the_reply_is_composed_from_the_customers_latest_turns_in_order(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    ai = RecordingAI()

    async def client() -> Any:
        return dev_env.client

    said = [f"Message {i} about my order" for i in range(23)]
    for text in said:
        message = InboundMessage(
            message_sid="SM" + uuid.uuid4().hex, sender=shop.customer_phone, to=SENDER, body=text
        )
        assert (await receive_message(db, client, message, task_queue=task_queue)).value
    async with running_worker(dev_env.client, db, task_queue, channel, ai=ai):
        view = await starter.request_notification(
            dev_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Where is my order?"},
            settings=settings_for(task_queue),
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        await starter.answer_notification(
            dev_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[0].id,
            answer={"answer": "It left the warehouse today."},
        )
        outcome = await result(dev_env.client, view.notification_id)
    assert outcome.status == "delivered"
    (history,) = ai.histories
    # The latest 20 turns, oldest first, ending with what the customer wrote last.
    assert [t.content for t in history] == said[-20:]
    assert {t.role for t in history} == {"user"}
