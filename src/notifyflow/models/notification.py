"""Notification types and NOTIFICATION_CONFIG, as in the reference note.

Adding a type is a config entry plus its answer schema model, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NotificationType(StrEnum):
    user_question_request = "user_question_request"
    user_support_request = "user_support_request"


class NotificationStatus(StrEnum):
    requested = "requested"
    answered = "answered"
    delivered = "delivered"
    delivery_failed = "delivery_failed"
    expired = "expired"
    closed = "closed"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        NotificationStatus.delivered,
        NotificationStatus.delivery_failed,
        NotificationStatus.expired,
        NotificationStatus.closed,
    }
)


class Campaign(StrEnum):
    """Template campaigns. The four of the reference note, plus the product's own notices."""

    merchant_user_question_request = "merchant_user_question_request"
    merchant_user_question_answer = "merchant_user_question_answer"
    merchant_user_override_request = "merchant_user_override_request"
    customer_support_response = "customer_support_response"
    notification_closed = "notification_closed"
    notification_reminder = "notification_reminder"
    customer_request_expired = "customer_request_expired"
    # The customer wrote again about an open notification (DESIGN §8 follow-ups).
    notification_follow_up = "notification_follow_up"
    # A correction of a delivered answer, to the customer outside the 24 h window (DESIGN §10).
    notification_correction = "notification_correction"
    # Customer satisfaction (DESIGN §10): the 1–5 ask inside the 24 h window (a twilio/quick-reply
    # sent in session, three buttons) and outside it (the approved quick-reply template, five).
    customer_satisfaction_quick_reply = "customer_satisfaction_quick_reply"
    customer_satisfaction_request = "customer_satisfaction_request"


def headline(type: str, context: Mapping[str, Any]) -> str:
    """The question or support reason, as stored in the context: the notification's first
    requested field."""
    cfg = NOTIFICATION_CONFIG[NotificationType(type)]
    return str(context.get(cfg.requested_fields[0], ""))


class UserQuestionAnswerSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", title="UserQuestionAnswer")
    answer: str = Field(min_length=1, description="The admin's answer to the customer's question")


class UserSupportRequestAnswerSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", title="UserSupportRequestAnswer")
    agent_response_to_customer: str = Field(min_length=1, description="What the customer is told")
    resolution_notes: str | None = Field(
        default=None, description="Internal notes; never sent to the customer"
    )


class NotificationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    requested_fields: tuple[str, ...]
    requested_campaign: Campaign
    requested_to: str = "merchant_user"
    answered_fields: tuple[str, ...]
    answered_campaign: Campaign
    answered_to: str = "conversation_user"
    answer_schema: type[BaseModel]
    # The field of the answer whose text reaches the customer.
    customer_field: str
    allow_multiple_answers: bool = False
    # Per-type overrides of NOTIFYFLOW_REMIND_AFTER / ESCALATE_AFTER / AUTO_CLOSE_AFTER.
    remind_after: timedelta | None = None
    escalate_after: timedelta | None = None
    auto_close_after: timedelta | None = None

    def answer_json_schema(self) -> dict[str, Any]:
        return self.answer_schema.model_json_schema()


NOTIFICATION_CONFIG: dict[NotificationType, NotificationConfig] = {
    NotificationType.user_question_request: NotificationConfig(
        requested_fields=("question",),
        requested_campaign=Campaign.merchant_user_question_request,
        answered_fields=("answer",),
        answered_campaign=Campaign.merchant_user_question_answer,
        answer_schema=UserQuestionAnswerSchema,
        customer_field="answer",
    ),
    NotificationType.user_support_request: NotificationConfig(
        requested_fields=("support_request_reason",),
        requested_campaign=Campaign.merchant_user_override_request,
        answered_fields=("agent_response_to_customer",),
        answered_campaign=Campaign.customer_support_response,
        answer_schema=UserSupportRequestAnswerSchema,
        customer_field="agent_response_to_customer",
    ),
}


def closure_notice(public_id: str) -> str:
    """The contract text sent to every other recipient once a notification is answered."""
    return f"Notification {public_id} has been answered and is now closed."
