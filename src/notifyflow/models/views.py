"""What clients see: the notification body of DESIGN §4."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr


class AnswerView(BaseModel):
    answered_by: int | None
    source: str
    accepted: bool
    answer: str
    reason_code: str | None = None
    reason: str | None = None
    created_at: datetime
    # The answer template (canned answer) the answer named; ``answer`` is what it resolved to.
    template: str | None = None
    # answer | correction (DESIGN §10). Once a delivered answer has been corrected, the first
    # accepted answer is version 1 and each correction the next; None before that.
    kind: str = "answer"
    version: int | None = None
    # A correction's send to the customer: pending | sent | failed (``reason`` says why).
    delivery_status: str | None = None
    # When notifyflow wrote it down (not shown: the live event stream's order).
    _recorded_at: datetime | None = PrivateAttr(default=None)

    @property
    def recorded_at(self) -> datetime:
        return self._recorded_at or self.created_at


class DeliveryView(BaseModel):
    method: str | None = None  # campaign | direct
    channel: str | None = None
    status: str | None = None
    provider_message_id: str | None = None
    failure_reason: str | None = None


class RecipientView(BaseModel):
    merchant_user_id: int
    name: str
    user_type: str
    reason: str  # initial | escalation
    # The recipient's own conversation: the instruction message and what was sent to them
    # (GET /v1/conversations/{id}/messages).
    conversation_id: int | None = None


class SlaView(BaseModel):
    """The first-answer service level (DESIGN §10)."""

    first_answer_due_at: datetime | None = None
    # None while unanswered and not yet due.
    answered_within_target: bool | None = None
    breached_at: datetime | None = None
    # In the merchant's business time when it has hours.
    time_to_first_answer_s: float | None = None


class CsatView(BaseModel):
    """The customer's satisfaction with the answer (DESIGN §10); the body's ``csat`` is null
    when the customer was not asked."""

    asked_at: datetime
    # quick_reply (inside the 24 h window) | template (outside it)
    method: str
    score: int | None = None
    answered_at: datetime | None = None


class NotificationView(BaseModel):
    notification_id: str
    type: str
    status: str
    merchant_id: int
    conversation_id: int
    context: dict[str, Any]
    answer_schema: dict[str, Any]
    allow_multiple_answers: bool
    recipients: list[RecipientView] = Field(default_factory=list)
    answers: list[AnswerView] = Field(default_factory=list)
    delivery: DeliveryView = Field(default_factory=DeliveryView)
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    delivered_at: datetime | None = None
    close_reason: str | None = None
    priority: str = "normal"
    sla: SlaView = Field(default_factory=SlaView)
    csat: CsatView | None = None


class TimelineEntry(BaseModel):
    """One line of ``notifyflow show``: requested, sent, reminded, answered, delivered, …"""

    at: datetime
    event: str
    detail: str
