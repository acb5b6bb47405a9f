"""A reference Voyager: the customer-facing agent as a Temporal workflow that asks notifyflow
through Nexus, and the merchant admin's agent that answers.

``CustomerAgentWorkflow`` runs an LLM loop. The model sees the conversation and the
``RequestNotificationTool`` function; when it calls it, the workflow runs the Nexus operation
``request_notification`` and waits durably (hours or days) for the outcome, then hands the
model the customer text to continue the conversation with.

``AdminAgentWorkflow`` is the other side: an admin writes in their own chat, the model turns
the message into ``AnswerNotificationTool`` and the workflow answers through the Nexus
operation ``answer_notification``. Who answers comes from the conversation (the workflow's
input), never from the model's arguments.

The LLM is called with the plain ``openai`` SDK in an activity, not the OpenAI Agents SDK
through ``temporalio-openai-agents``: notifyflow already depends on ``openai``, the loop is a
few lines, and each model call is one activity an operator can read in the Temporal UI.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import NexusOperationError

with workflow.unsafe.imports_passed_through():
    from notifyflow.nexus_service import (
        NexusAnswer,
        NexusClose,
        NexusCustomerMessage,
        NexusNotificationRequest,
        NotificationOutcome,
        NotificationService,
    )

MAX_TURNS = 6
SYSTEM_CUSTOMER = (
    "You are the shop's assistant talking to a customer on WhatsApp. When you cannot answer "
    "from what you know, call RequestNotificationTool to ask the merchant's team, then tell "
    "the customer what they answered."
)
SYSTEM_ADMIN = (
    "You help a merchant admin. When the admin answers a customer's notification (NOTIF_<n>), "
    "call AnswerNotificationTool with answer_json matching the notification's schema."
)


class ChatMessage(BaseModel):
    role: str
    content: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ModelCall(BaseModel):
    model: str
    messages: list[ChatMessage]
    # Tool names; the activity turns them into function schemas (the workflow sandbox does
    # not import notifyflow.tools).
    tools: list[str]


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: str


class ModelTurn(BaseModel):
    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)


class CustomerTurnInput(BaseModel):
    conversation_id: int
    customer_message: str
    endpoint: str = "notifyflow"
    model: str = "gpt-4.1-mini"


class CustomerTurnResult(BaseModel):
    reply: str
    notification: NotificationOutcome | None = None


class AdminTurnInput(BaseModel):
    merchant_user_id: int
    admin_message: str
    instruction: str  # the notification's instruction message, from the admin's chat
    endpoint: str = "notifyflow"
    model: str = "gpt-4.1-mini"


class AdminTurnResult(BaseModel):
    reply: str
    accepted: bool


REQUEST_TOOL = "RequestNotificationTool"
ANSWER_TOOL = "AnswerNotificationTool"


def tool_schemas(names: list[str]) -> list[dict[str, Any]]:
    from notifyflow.tools import AnswerNotificationTool, RequestNotificationTool

    known = {t.tool_name: t for t in (RequestNotificationTool, AnswerNotificationTool)}
    return [known[name].openai_tool() for name in names]


class LLMActivities:
    """The model call, outside the workflow: any OpenAI-compatible endpoint."""

    def __init__(self, client: Any) -> None:
        self._client = client  # an openai.AsyncOpenAI

    @activity.defn(name="voyager_think")
    async def think(self, call: ModelCall) -> ModelTurn:
        response = await self._client.chat.completions.create(
            model=call.model,
            messages=[m.model_dump(exclude_none=True) for m in call.messages],
            tools=tool_schemas(call.tools),
        )
        message = response.choices[0].message
        return ModelTurn(
            text=message.content,
            tool_calls=[
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                for c in (message.tool_calls or [])
            ],
        )


async def _wait(handle: Awaitable[NotificationOutcome]) -> NotificationOutcome:
    return await handle


async def _think(call: ModelCall) -> ModelTurn:
    return await workflow.execute_activity_method(
        LLMActivities.think,
        call,
        start_to_close_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        summary="the model's next step",
    )


def _assistant(turn: ModelTurn) -> ChatMessage:
    return ChatMessage(
        role="assistant",
        content=turn.text,
        tool_calls=[
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.tool_calls
        ]
        or None,
    )


# What a customer says when they no longer need the answer (a real agent asks its model).
WITHDRAWALS = frozenset({"never mind", "nevermind", "no longer needed", "cancel", "olvídalo"})


def notification_id_from(token: str | None) -> str | None:
    """The notification a started ``request_notification`` operation is backed by: its token
    is the base64url JSON of the handler's workflow (``{"t": 1, "ns": …, "wid": "NOTIF_12"}``),
    and notifyflow's workflow id is the notification id."""
    if not token:
        return None
    padded = token + "=" * (-len(token) % 4)
    try:
        wid = json.loads(base64.urlsafe_b64decode(padded)).get("wid")
    except ValueError:
        return None
    return wid if isinstance(wid, str) else None


@workflow.defn
class CustomerAgentWorkflow:
    def __init__(self) -> None:
        # What the customer wrote while the merchant's team was being asked.
        self._customer_wrote: list[str] = []

    @workflow.signal
    def customer_wrote(self, text: str) -> None:
        """The customer wrote again: forwarded as a follow-up, or a withdrawal."""
        self._customer_wrote.append(text)

    @workflow.run
    async def run(self, input: CustomerTurnInput) -> CustomerTurnResult:
        notifyflow = workflow.create_nexus_client(
            service=NotificationService, endpoint=input.endpoint
        )
        messages = [
            ChatMessage(role="system", content=SYSTEM_CUSTOMER),
            ChatMessage(role="user", content=input.customer_message),
        ]
        outcome: NotificationOutcome | None = None
        for _ in range(MAX_TURNS):
            turn = await _think(
                ModelCall(model=input.model, messages=messages, tools=[REQUEST_TOOL])
            )
            messages.append(_assistant(turn))
            if not turn.tool_calls:
                return CustomerTurnResult(reply=turn.text or "", notification=outcome)
            for call in turn.tool_calls:
                result = await self._request(notifyflow, input, call)
                if isinstance(result, NotificationOutcome):
                    outcome = result
                    content = json.dumps(
                        {"status": result.status.value, "answer": result.customer_text}
                    )
                else:
                    content = result
                messages.append(ChatMessage(role="tool", tool_call_id=call.id, content=content))
        return CustomerTurnResult(reply="", notification=outcome)

    async def _request(
        self, notifyflow: Any, input: CustomerTurnInput, call: ToolCall
    ) -> NotificationOutcome | str:
        if call.name != REQUEST_TOOL:
            return f"There is no tool named {call.name}."
        try:
            args = json.loads(call.arguments)
            kind = args["notification_type"]
            field = "question" if kind == "user_question_request" else "support_request_reason"
            request = NexusNotificationRequest(
                type=kind,
                conversation_id=input.conversation_id,
                context={field: args.get(field) or input.customer_message},
                # One notification per tool call, whatever retries happen.
                idempotency_key=f"{workflow.info().workflow_id}:{call.id}",
            )
        except (ValueError, KeyError, TypeError) as exc:
            return f"The arguments are invalid: {exc}"
        # Durable: the workflow sleeps until the merchant's team has answered (or it expired),
        # passing on what the customer writes meanwhile.
        handle = await notifyflow.start_operation(NotificationService.request_notification, request)
        notification_id = notification_id_from(handle.operation_token)
        result: asyncio.Future[NotificationOutcome] = asyncio.ensure_future(_wait(handle))
        while True:
            await workflow.wait_condition(lambda: result.done() or bool(self._customer_wrote))
            while self._customer_wrote and notification_id and not result.done():
                await self._pass_on(notifyflow, notification_id, self._customer_wrote.pop(0))
            if result.done():
                return result.result()

    async def _pass_on(self, notifyflow: Any, notification_id: str, text: str) -> None:
        try:
            if text.strip().lower().rstrip(".!") in WITHDRAWALS:
                await notifyflow.execute_operation(
                    NotificationService.close_notification,
                    NexusClose(notification_id=notification_id, reason="withdrawn"),
                )
            else:
                await notifyflow.execute_operation(
                    NotificationService.add_customer_message,
                    NexusCustomerMessage(notification_id=notification_id, text=text),
                )
        except NexusOperationError as err:
            # Answered or closed meanwhile: the outcome arrives on its own.
            workflow.logger.info("not passed on: %s", err.cause)


@workflow.defn
class AdminAgentWorkflow:
    @workflow.run
    async def run(self, input: AdminTurnInput) -> AdminTurnResult:
        notifyflow = workflow.create_nexus_client(
            service=NotificationService, endpoint=input.endpoint
        )
        turn = await _think(
            ModelCall(
                model=input.model,
                messages=[
                    ChatMessage(role="system", content=SYSTEM_ADMIN),
                    ChatMessage(role="assistant", content=input.instruction),
                    ChatMessage(role="user", content=input.admin_message),
                ],
                tools=[ANSWER_TOOL],
            )
        )
        for call in turn.tool_calls:
            if call.name != ANSWER_TOOL:
                continue
            args = json.loads(call.arguments)
            try:
                accepted = await notifyflow.execute_operation(
                    NotificationService.answer_notification,
                    NexusAnswer(
                        notification_id=args["notification_id"],
                        answered_by=input.merchant_user_id,
                        answer_json=args["answer_json"],
                    ),
                )
            except NexusOperationError as err:
                return AdminTurnResult(reply=f"Not accepted: {err.cause}", accepted=False)
            return AdminTurnResult(
                reply=f"Answer to {accepted.notification_id} accepted.", accepted=True
            )
        return AdminTurnResult(reply=turn.text or "", accepted=False)
