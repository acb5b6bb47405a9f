"""Inbound Twilio webhooks: WhatsApp messages and message status callbacks.

The routes in :mod:`notifyflow.api.webhook_routes` check the signature and hand the form here.
Everything answers Twilio within milliseconds; slow work runs in Temporal:

- **A customer's message** is stored in their conversation (role ``user``, the ``MessageSid`` as
  its provider id) and moves the conversation's ``last_inbound_at`` forward, which is what the
  24-hour rule reads when an answer is sent.
- **A merchant user's message** is stored in their own conversation (refreshing their own
  window) and handed to an :class:`~notifyflow.workflows.admin_reply.AdminReplyWorkflow`, which
  works out whether it answers a notification, submits it and replies to them.
- **A status callback** moves the delivery row forward (never backward). A customer answer that
  failed with 63016 starts the template fallback; any other failure of it marks the
  notification ``delivery_failed`` (both in
  :class:`~notifyflow.workflows.fallback.FallbackDeliveryWorkflow`).

Each webhook is handled once: an ``InboundEvent`` row per ``MessageSid`` (per ``MessageSid`` and
status for callbacks) is written in the same transaction as its effect, and any workflow is
started *before* that commit with an id derived from the event, so a crash in between is
repaired by Twilio's retry, and a webhook delivered twice starts nothing new.
"""

from notifyflow.inbound.common import GetClient
from notifyflow.inbound.forms import (
    TWILIO_ERRORS,
    InboundMessage,
    StatusCallback,
    WebhookInputError,
    twilio_reason,
)
from notifyflow.inbound.messages import MessageOutcome, receive_message
from notifyflow.inbound.status import StatusOutcome, receive_status

__all__ = [
    "TWILIO_ERRORS",
    "GetClient",
    "InboundMessage",
    "MessageOutcome",
    "StatusCallback",
    "StatusOutcome",
    "WebhookInputError",
    "receive_message",
    "receive_status",
    "twilio_reason",
]
