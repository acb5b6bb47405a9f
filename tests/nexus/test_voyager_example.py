"""The reference Voyager (examples/voyager) end to end, offline: its customer agent's model
(the fake OpenAI, through the real SDK) calls RequestNotificationTool, the workflow waits on
the Nexus operation, the admin's agent turns the admin's message into AnswerNotificationTool,
and the customer agent continues with the localized answer."""

from __future__ import annotations

import json
import uuid

from examples.voyager.agent import (
    AdminAgentWorkflow,
    AdminTurnInput,
    CustomerAgentWorkflow,
    CustomerTurnInput,
    LLMActivities,
)
from openai import AsyncOpenAI
from temporalio.worker import Worker

from notifyflow import starter
from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeAIRequest, tool_calls_reply
from tests.nexus.conftest import Voyager, notifyflow_worker
from tests.workflows.helpers import until

QUESTION = "Do you ship to Canada?"


def customer_model(req: FakeAIRequest) -> str:
    tool_results = [m for m in req.messages if m["role"] == "tool"]
    if not tool_results:
        return tool_calls_reply(
            (
                "RequestNotificationTool",
                {"notification_type": "user_question_request", "question": QUESTION},
            )
        )
    answer = json.loads(tool_results[-1]["content"])["answer"]
    return f"Good news! The shop says: {answer}"


def admin_model(req: FakeAIRequest) -> str:
    instruction = next(m["content"] for m in req.messages if m["role"] == "assistant")
    public = instruction.split(" ")[0]
    return tool_calls_reply(
        (
            "AnswerNotificationTool",
            {"notification_id": public, "answer_json": json.dumps({"answer": req.last_user_text})},
        )
    )


async def test_the_reference_voyager_asks_waits_and_continues_with_the_answer(
    dev_env, db, task_queue, channel, shop_factory, fake_openai, voyager: Voyager
) -> None:
    shop = await shop_factory()
    llm = LLMActivities(
        AsyncOpenAI(base_url=fake_openai.base_url, api_key=FAKE_OPENAI_KEY, max_retries=0)
    )
    async with (
        notifyflow_worker(dev_env, db, task_queue, channel),
        Worker(
            voyager.client,
            task_queue=voyager.task_queue,
            workflows=[CustomerAgentWorkflow, AdminAgentWorkflow],
            activities=[llm.think],
        ),
    ):
        fake_openai.set_responder(customer_model)
        customer = await voyager.client.start_workflow(
            CustomerAgentWorkflow.run,
            CustomerTurnInput(
                conversation_id=shop.conversation_id,
                customer_message=QUESTION,
                endpoint=voyager.endpoint,
            ),
            id=f"customer-{uuid.uuid4().hex[:8]}",
            task_queue=voyager.task_queue,
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        (view,) = await starter.list_notifications(db, merchant_id=shop.merchant_id)
        detail = await starter.get_notification(db, view.notification_id)
        assert detail.context["question"] == QUESTION
        # The customer writes again while waiting: the agent passes it on as a follow-up.
        await customer.signal(CustomerAgentWorkflow.customer_wrote, "It is a gift.")
        await until(lambda: all(len(channel.to(a.phone)) == 2 for a in shop.admins))
        assert channel.to(shop.admins[1].phone)[-1].variables == {
            "1": view.notification_id,
            "2": "It is a gift.",
        }
        fake_openai.set_responder(admin_model)
        admin = await voyager.client.execute_workflow(
            AdminAgentWorkflow.run,
            AdminTurnInput(
                merchant_user_id=shop.admins[0].id,
                admin_message="Yes, we ship to Canada in 5 days",
                instruction=f"{view.notification_id} · user_question_request",
                endpoint=voyager.endpoint,
            ),
            id=f"admin-{uuid.uuid4().hex[:8]}",
            task_queue=voyager.task_queue,
        )
        assert admin.accepted, admin.reply
        fake_openai.set_responder(customer_model)
        result = await customer.result()
    assert result.notification is not None
    assert result.notification.status == "delivered"
    assert result.notification.answered_by == shop.admins[0].id
    assert "5 days" in result.reply and result.reply.startswith("Good news!")
    # The customer got the answer on WhatsApp too, once.
    assert len(channel.to(shop.customer_phone)) == 1


async def test_the_reference_voyager_withdraws_when_the_customer_no_longer_needs_it(
    dev_env, db, task_queue, channel, shop_factory, fake_openai, voyager: Voyager
) -> None:
    shop = await shop_factory()
    llm = LLMActivities(
        AsyncOpenAI(base_url=fake_openai.base_url, api_key=FAKE_OPENAI_KEY, max_retries=0)
    )

    def model(req: FakeAIRequest) -> str:
        if not [m for m in req.messages if m["role"] == "tool"]:
            return customer_model(req)
        status = json.loads([m for m in req.messages if m["role"] == "tool"][-1]["content"])
        return f"Understood, I have cancelled the request ({status['status']})."

    fake_openai.set_responder(model)
    async with (
        notifyflow_worker(dev_env, db, task_queue, channel),
        Worker(
            voyager.client,
            task_queue=voyager.task_queue,
            workflows=[CustomerAgentWorkflow],
            activities=[llm.think],
        ),
    ):
        customer = await voyager.client.start_workflow(
            CustomerAgentWorkflow.run,
            CustomerTurnInput(
                conversation_id=shop.conversation_id,
                customer_message=QUESTION,
                endpoint=voyager.endpoint,
            ),
            id=f"customer-{uuid.uuid4().hex[:8]}",
            task_queue=voyager.task_queue,
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        await customer.signal(CustomerAgentWorkflow.customer_wrote, "Never mind.")
        result = await customer.result()
    assert result.notification is not None and result.notification.status == "closed"
    assert result.notification.reason == "withdrawn"
    assert "cancelled" in result.reply
    (view,) = await starter.list_notifications(db, merchant_id=shop.merchant_id)
    assert view.close_reason == "withdrawn"
