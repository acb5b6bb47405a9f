"""Inputs and results of the workflow, its messages and its activities."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from notifyflow.models.notification import NotificationStatus, NotificationType


class Timing(BaseModel):
    """When to remind, escalate and auto-close, counted from the request."""

    remind_after: timedelta
    escalate_after: timedelta
    auto_close_after: timedelta

    def halved(self) -> Timing:
        """Urgent notifications run on half the timers."""
        return Timing(
            remind_after=self.remind_after / 2,
            escalate_after=self.escalate_after / 2,
            auto_close_after=self.auto_close_after / 2,
        )


class Priority(StrEnum):
    normal = "normal"
    urgent = "urgent"


class ServiceLevel(BaseModel):
    """The merchant's clock (DESIGN §10): timers count open business time when it has hours."""

    timezone: str = "UTC"
    # {"monday": ["09:00-18:00"], …}; None: the clock always runs.
    business_hours: dict[str, list[str]] | None = None
    # When the first answer is due (a breach escalates at once); None: no target.
    first_answer_target: timedelta | None = None
    # Ask the customer to rate the answer after delivery (DESIGN §10). Travels here so a
    # merchant without CSAT costs no look-up per notification.
    csat_enabled: bool = False


class NotificationWorkflowInput(BaseModel):
    notification_id: int
    type: NotificationType
    merchant_id: int
    conversation_id: int
    # The question or support reason: shown in summaries, never used for decisions.
    headline: str
    answer_schema: dict[str, Any]
    answered_fields: list[str]
    allow_multiple_answers: bool = False
    timing: Timing
    # An answer with no prior request (update-with-start): no fan-out, and the answerer,
    # checked by the starter, is the one who may answer.
    answered_directly: bool = False
    allowed_answerers: list[int] = Field(default_factory=list)
    # The merchant's admins when the notification was recorded: they may always answer, so an
    # admin's answer is taken at once even while the fan-out is still being retried.
    admin_ids: list[int] = Field(default_factory=list)
    priority: Priority = Priority.normal
    service: ServiceLevel | None = None


class AnswerSource(StrEnum):
    api = "api"
    cli = "cli"
    tool = "tool"
    whatsapp = "whatsapp"
    ui = "ui"


class AnswerSubmission(BaseModel):
    """Payload of update ``submit_answer`` and signal ``answer``."""

    notification_id: str
    answered_by: int
    answer_json: str
    source: AnswerSource = AnswerSource.api
    # The answer template (canned answer) answer_json was resolved from, by its code.
    template: str | None = None


class AnswerAccepted(BaseModel):
    notification_id: str
    status: NotificationStatus
    accepted: bool = True


class CloseRequest(BaseModel):
    """Payload of signal ``close``."""

    reason: str | None = None
    closed_by: str | None = None


class Stage(StrEnum):
    notifying = "notifying recipients"
    waiting = "waiting for an answer"
    delivering = "delivering the answer"
    finishing = "closing"
    done = "done"


class RejectedAttempt(BaseModel):
    answered_by: int | None
    source: AnswerSource
    code: str
    message: str
    at: datetime


class WorkflowStatus(BaseModel):
    """Result of query ``status``."""

    notification_id: str
    status: NotificationStatus
    stage: Stage
    recipients: list[int] = Field(default_factory=list)
    answered_by: int | None = None
    reminders_sent: int = 0
    escalated: bool = False
    rejected: list[RejectedAttempt] = Field(default_factory=list)


class NotificationOutcome(BaseModel):
    """The workflow's result."""

    notification_id: str
    status: NotificationStatus
    delivery_method: str | None = None
    reason: str | None = None
    # Who answered, and the answer in the customer's language as delivered (the Nexus
    # caller's workflow continues its conversation with it).
    answered_by: int | None = None
    customer_text: str | None = None


# ---- activities -------------------------------------------------------------------------


class OpenInput(BaseModel):
    notification_id: int


class OpenResult(BaseModel):
    recipients: list[int]
    # Recipients plus every admin of the merchant: who may answer (DESIGN §2).
    allowed_answerers: list[int]
    support_type: str | None = None


class FollowUpKind(StrEnum):
    reminder = "reminder"
    escalation = "escalation"


class FollowUpInput(BaseModel):
    notification_id: int
    kind: FollowUpKind
    recipients: list[int]


class FollowUpResult(BaseModel):
    recipients: list[int]
    allowed_answerers: list[int]
    sent: int


class DeliverInput(BaseModel):
    notification_id: int
    answer: dict[str, Any]
    answered_by: int
    answered_at: datetime
    source: AnswerSource
    recipients: list[int]
    # Where the customer-facing text sits in the answer.
    customer_field: str
    # The answer template the answer came from (recorded with the answer).
    template: str | None = None


class DeliverResult(BaseModel):
    status: NotificationStatus
    method: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    closure_notices: int = 0
    # The localized answer that reached the customer (None when it did not).
    customer_text: str | None = None


class AskSatisfactionInput(BaseModel):
    """Activity ``ask_satisfaction``: the customer is asked to rate the answer, once."""

    notification_id: int


class AskSatisfactionResult(BaseModel):
    asked: bool
    # quick_reply | template; None when not asked.
    method: str | None = None
    reason: str | None = None


class FinishInput(BaseModel):
    notification_id: int
    status: NotificationStatus
    reason: str | None = None
    recipients: list[int]
    tell_customer: bool
    # Also tell every merchant user whose request the provider accepted (the workflow does not
    # know them: a close cancelled the open before it returned its recipients).
    tell_those_asked: bool = False


class RecordRejectionInput(BaseModel):
    notification_id: int
    attempt: RejectedAttempt
    answer_json: str


# ---- the customer's follow-ups (DESIGN §8) ------------------------------------------------


class CustomerMessage(BaseModel):
    """Payload of update ``add_customer_message``: the customer wrote again about it."""

    notification_id: str
    text: str


class CustomerMessageAccepted(BaseModel):
    notification_id: str
    # The follow-up's number within the notification (1, 2, …).
    seq: int


class ForwardInput(BaseModel):
    notification_id: int
    seq: int
    text: str
    at: datetime
    recipients: list[int]


class ServiceChange(BaseModel):
    """Payload of signal ``service_level``: a merchant's new timers and clock, for waiting
    notifications (the workflow halves the timers when it is urgent)."""

    timing: Timing
    service: ServiceLevel | None = None
