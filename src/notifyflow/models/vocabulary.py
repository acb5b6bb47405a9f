"""The words that go into ledger keys and database rows, as StrEnums.

Each value equals the string the product has always written, so keys and rows are byte for byte
what they were before these became enums (``tests/unit/test_keys.py`` pins a few)."""

from __future__ import annotations

from enum import StrEnum


class DeliveryKind(StrEnum):
    """What a send is for: the middle of its ledger key and ``delivery.kind``."""

    request = "request"
    escalation = "escalation"
    reminder = "reminder"
    closure = "closure"
    answer = "answer"
    expiry = "expiry"
    admin_reply = "admin_reply"
    # A customer's follow-up forwarded to the recipients; its key carries the follow-up's number.
    customer_message = "customer_message"
    # A correction of a delivered answer (DESIGN §10); its key carries the version number.
    correction = "correction"
    # The customer's satisfaction ask after delivery (DESIGN §10), once per notification.
    csat = "csat"
    # The notices of a notification's end carry its final status as their kind.
    expired = "expired"
    closed = "closed"
    delivery_failed = "delivery_failed"


class ChannelName(StrEnum):
    whatsapp = "whatsapp"
    instagram = "instagram"
    console = "console"


class SendMethod(StrEnum):
    """``campaign``: an approved template; ``direct``: free-form inside the 24 h window."""

    campaign = "campaign"
    direct = "direct"


class RecipientKind(StrEnum):
    customer = "customer"
    merchant_user = "merchant_user"


class MessageRole(StrEnum):
    user = "user"
    assistant = "assistant"
