"""Inputs and results of the inbound side: an admin's WhatsApp reply, and the delivery fallback
started by a Twilio status callback (pure, sandbox-safe)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class AdminReplyInput(BaseModel):
    """A merchant user's WhatsApp message, already stored by the webhook."""

    message_sid: str
    merchant_id: int
    merchant_user_id: int
    # The merchant user's own conversation, where the message and the reply are recorded.
    conversation_id: int
    text: str
    # ``OriginalRepliedMessageSid``: the message the admin quoted, if any.
    quoted_sid: str | None = None


class ReplyOutcome(StrEnum):
    accepted = "accepted"
    refused = "refused"  # the workflow refused the answer (already answered, closed, …)
    unreadable = "unreadable"  # no answer could be made of the text
    ambiguous = "ambiguous"  # several notifications could be meant
    not_an_answer = "not_an_answer"  # nothing open to answer: left to the conversation
    failed = "failed"  # gave up (a long outage): the admin is asked to send it again


class AdminReplyDecision(BaseModel):
    """What became of the message, and what to tell the admin (None: nothing)."""

    outcome: ReplyOutcome
    notification_id: int | None = None
    reason_code: str | None = None
    reply: str | None = None


class AdminReplyMessage(BaseModel):
    """The short WhatsApp reply to the admin."""

    message_sid: str
    merchant_id: int
    merchant_user_id: int
    conversation_id: int
    # With a notification the reply goes through the delivery ledger; without, directly.
    notification_id: int | None = None
    text: str


class FallbackAction(StrEnum):
    # A free-form answer came back 63016 (window closed): send the answered campaign.
    template = "template"
    # The answer failed for good (63005, 63014, …): delivery_failed, the answerer told.
    fail = "fail"


class FallbackInput(BaseModel):
    notification_id: int
    action: FallbackAction
    # The failed message: the customer answer's provider id and Twilio's error.
    provider_message_id: str
    error_code: str | None = None
    reason: str | None = None


class FallbackResult(BaseModel):
    notification_id: str
    status: str
    method: str | None = None
    # A template went out in this run (False: the ledger already had it, or nothing to do).
    sent: bool = False
    reason: str | None = None
