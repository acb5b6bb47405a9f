"""Every idempotency key, built here and only here.

A ledger key names one message to one person: ``NOTIF_<n>:<kind>:<recipient>``. Two code paths
that must send *one* message between them (the delivery's template path and the status
callback's template fallback) agree because both call :func:`customer_template_key`."""

from __future__ import annotations

from notifyflow.models.ids import format_notification_id
from notifyflow.models.vocabulary import DeliveryKind, RecipientKind


def member_key(
    notification_id: int, kind: DeliveryKind, merchant_user_id: int, part: int | None = None
) -> str:
    """A message to one merchant user about a notification; ``part`` tells apart several of
    one kind (the customer's follow-ups: ``NOTIF_7:customer_message-2:3``)."""
    step = f"{kind}-{part}" if part is not None else f"{kind}"
    return f"{format_notification_id(notification_id)}:{step}:{merchant_user_id}"


def customer_key(notification_id: int, kind: DeliveryKind, part: int | None = None) -> str:
    """A free-form message to the notification's customer; ``part`` tells apart several of
    one kind (the corrections, by version: ``NOTIF_7:correction-2:customer``)."""
    step = f"{kind}-{part}" if part is not None else f"{kind}"
    return f"{format_notification_id(notification_id)}:{step}:{RecipientKind.customer}"


def customer_template_key(notification_id: int, kind: DeliveryKind, part: int | None = None) -> str:
    """The template to the notification's customer (outside the 24 h window)."""
    return f"{customer_key(notification_id, kind, part)}:template"


def shortened_key(key: str) -> str:
    """The second try of a template whose variable the provider refused."""
    return f"{key}:shortened"


def admin_reply_key(message_sid: str) -> str:
    """The reply to one inbound WhatsApp message from a merchant user."""
    return f"inbound:{message_sid}:reply"


def inbound_message_key(message_sid: str) -> str:
    """An inbound message, handled once."""
    return f"twilio:message:{message_sid}"


def inbound_status_key(message_sid: str, status: str) -> str:
    """A status callback, handled once per status."""
    return f"twilio:status:{message_sid}:{status}"
