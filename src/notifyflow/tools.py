"""LLM tools over the starter: RequestNotificationTool (for the customer-facing agent) and
AnswerNotificationTool (for the agent in a merchant user's conversation).

Each tool is a pydantic model that exports an OpenAI function-tool schema and runs against
the starter. Who acts comes from the conversation the tool runs in, never from the model's
arguments; errors come back as short sentences an LLM can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from temporalio.client import Client

from notifyflow import starter
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Conversation, Message
from notifyflow.models.errors import NotificationError
from notifyflow.models.workflow_io import AnswerSource


@dataclass(frozen=True)
class ToolContext:
    """Where a tool runs: the conversation of the agent that calls it."""

    client: Client
    db: SessionFactory
    conversation_id: int
    settings: Settings | None = None


class _Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool_name: ClassVar[str]
    tool_description: ClassVar[str]

    @classmethod
    def openai_tool(cls) -> dict[str, Any]:
        """The Chat Completions / Responses function-tool definition."""
        schema = cls.model_json_schema()
        schema.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": cls.tool_name,
                "description": cls.tool_description,
                "parameters": schema,
            },
        }

    @classmethod
    def from_arguments(cls, arguments: str | dict[str, Any]) -> _Tool | str:
        """Parse the model's arguments; a sentence explaining the mistake if they are wrong."""
        try:
            data = json.loads(arguments) if isinstance(arguments, str) else arguments
            return cls.model_validate(data)
        except (ValueError, ValidationError) as exc:
            return f"The arguments for {cls.tool_name} are invalid: {_short(exc)}"


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        return f"{where}: {first['msg']}"
    return str(exc).splitlines()[0]


class RequestNotificationTool(_Tool):
    tool_name: ClassVar[str] = "RequestNotificationTool"
    tool_description: ClassVar[str] = (
        "Ask the merchant's team on WhatsApp when you cannot answer the customer: "
        "user_question_request with the customer's question, or user_support_request with "
        "why the customer needs a human. The answer reaches the customer later."
    )

    notification_type: Literal["user_question_request", "user_support_request"]
    question: str | None = Field(default=None, description="The customer's question")
    support_request_reason: str | None = Field(
        default=None, description="Why the customer needs a human"
    )

    async def run(self, ctx: ToolContext, *, idempotency_key: str | None = None) -> str:
        context = {
            k: v
            for k, v in {
                "question": self.question,
                "support_request_reason": self.support_request_reason,
            }.items()
            if v
        }
        try:
            view = await starter.request_notification(
                ctx.client,
                ctx.db,
                type=self.notification_type,
                conversation_id=ctx.conversation_id,
                context=context,
                idempotency_key=idempotency_key,
                settings=ctx.settings,
            )
        except NotificationError as err:
            return f"The request was not sent: {err.message}."
        return (
            f"Request {view.notification_id} is processing: the merchant's team has been "
            "asked and the answer will be sent to the customer. Tell the customer so."
        )


class AnswerNotificationTool(_Tool):
    tool_name: ClassVar[str] = "AnswerNotificationTool"
    tool_description: ClassVar[str] = (
        "Answer a customer's notification (NOTIF_<n>) on behalf of the merchant user you are "
        "talking to. answer_json is a JSON object matching the schema given in the "
        "notification's instruction message; or give template, the code of one of the "
        "merchant's quick answers the instruction message lists (like hours)."
    )

    notification_id: str = Field(description="The notification id, like NOTIF_123")
    answer_json: str | None = Field(
        default=None, description="The answer as a JSON object string (or give template)"
    )
    template: str | None = Field(
        default=None,
        max_length=64,
        description="A quick answer's code, like hours (instead of answer_json)",
    )

    @model_validator(mode="after")
    def _one_answer(self) -> AnswerNotificationTool:
        if (self.answer_json is None) == (self.template is None):
            raise ValueError("give answer_json or template, exactly one of them")
        return self

    async def run(self, ctx: ToolContext, *, source: AnswerSource = AnswerSource.tool) -> str:
        async with ctx.db() as session:
            conversation = await session.get(Conversation, ctx.conversation_id)
        if conversation is None or conversation.merchant_user_id is None:
            return "Only the merchant's own users can answer notifications, in their own chat."
        try:
            from notifyflow.directory import check_active_answerer

            await check_active_answerer(ctx.db, conversation.merchant_user_id)
            accepted = await starter.answer_notification(
                ctx.client,
                ctx.db,
                self.notification_id,
                answered_by=conversation.merchant_user_id,
                answer=(
                    self.answer_json
                    if self.answer_json is not None
                    # "#hours" or "Hours" is what a model copies from the instruction message.
                    else {"template": (self.template or "").strip().lstrip("#").lower()}
                ),
                source=source,
            )
        except NotificationError as err:
            return f"The answer was not accepted: {err.message}."
        return (
            f"Answer to {accepted.notification_id} accepted; it is being delivered to the customer."
        )


async def conversation_history(
    db: SessionFactory, conversation_id: int, *, limit: int = 50
) -> list[dict[str, str]]:
    """The agent's view of a conversation, oldest first. Template sends (campaigns) are
    included, so the agent sees the notification a merchant user is replying to."""
    async with db() as session:
        rows = (
            await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.created_at.desc(), Message.id.desc())
                .limit(limit)
            )
        ).all()
    history = []
    for m in reversed(rows):
        content = m.content
        if (m.whatsapp_payload or {}).get("type") == "template":
            content = f"[template {m.whatsapp_payload.get('campaign', '')}] {content}"  # type: ignore[union-attr]
        history.append(
            {"role": m.role if m.role in ("user", "assistant") else "system", "content": content}
        )
    return history
