"""The LLM tools: OpenAI function schemas, the answerer taken from the conversation, errors as
short sentences, and the history helper showing template sends."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from notifyflow.db.tables import Conversation
from notifyflow.tools import (
    AnswerNotificationTool,
    RequestNotificationTool,
    ToolContext,
    conversation_history,
)
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for
from tests.workflows.helpers import result, until


def test_tools_export_openai_function_schemas() -> None:
    tool = AnswerNotificationTool.openai_tool()
    assert tool["type"] == "function"
    assert tool["function"]["name"] == "AnswerNotificationTool"
    params = tool["function"]["parameters"]
    # answer_json, or template (a quick answer's code): the tool refuses neither or both.
    assert set(params["required"]) == {"notification_id"}
    assert {"answer_json", "template"} <= set(params["properties"])
    # The answerer is never an argument the model could forge.
    assert "answered_by" not in params["properties"]
    request = RequestNotificationTool.openai_tool()["function"]["parameters"]
    assert request["properties"]["notification_type"]["enum"] == [
        "user_question_request",
        "user_support_request",
    ]


def test_bad_arguments_come_back_as_a_sentence() -> None:
    parsed = AnswerNotificationTool.from_arguments('{"notification_id": "NOTIF_1"}')
    assert isinstance(parsed, str) and "answer_json" in parsed
    assert isinstance(AnswerNotificationTool.from_arguments("{not json"), str)


async def test_request_and_answer_through_the_tools(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    settings = settings_for(task_queue)
    customer_ctx = ToolContext(skip_env.client, db, shop.conversation_id, settings)
    async with running_worker(skip_env.client, db, task_queue, channel):
        tool = RequestNotificationTool.from_arguments(
            {"notification_type": "user_question_request", "question": "Do you repair bikes?"}
        )
        assert isinstance(tool, RequestNotificationTool)
        said = await tool.run(customer_ctx)
        assert said.startswith("Request NOTIF_") and "processing" in said
        public = said.split()[1]
        missing = await RequestNotificationTool(notification_type="user_support_request").run(
            customer_ctx
        )
        assert (
            missing.startswith("The request was not sent:") and "support_request_reason" in missing
        )

        # The admin's own conversation exists once the request went out.
        admin = shop.admins[0]
        await until(lambda: bool(channel.to(admin.phone)))
        async with db() as session:
            conv_id = await session.scalar(
                select(Conversation.id).where(Conversation.merchant_user_id == admin.id)
            )
        assert conv_id is not None
        admin_ctx = ToolContext(skip_env.client, db, conv_id, settings)

        # The agent in the admin's chat sees the campaign it is replying to — once the ledger
        # has recorded the send, which it does after the provider accepted it (the fake has
        # the message a moment before the history does).
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            history = await conversation_history(db, conv_id)
            if any(
                h["content"].startswith("[template merchant_user_question_request]")
                for h in history
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, history
            await asyncio.sleep(0.02)
        assert any(public in h["content"] for h in history)

        wrong = await AnswerNotificationTool(notification_id=public, answer_json='{"a": 1}').run(
            admin_ctx
        )
        assert wrong.startswith("The answer was not accepted:")
        # A customer's conversation cannot answer, whatever the model claims.
        refused = await AnswerNotificationTool(
            notification_id=public, answer_json=json.dumps({"answer": "Yes"})
        ).run(customer_ctx)
        assert refused.startswith("Only the merchant's own users")
        ok = await AnswerNotificationTool(
            notification_id=public, answer_json=json.dumps({"answer": "Yes, every weekday."})
        ).run(admin_ctx)
        assert ok == f"Answer to {public} accepted; it is being delivered to the customer."
        await result(skip_env.client, public)
    assert len(channel.to(shop.customer_phone)) == 1
