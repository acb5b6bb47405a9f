"""Ledger and inbound keys are written into the database and compared across code paths and
releases: they must stay byte for byte what they are."""

from __future__ import annotations

from notifyflow.models.vocabulary import (
    ChannelName,
    DeliveryKind,
    MessageRole,
    RecipientKind,
    SendMethod,
)
from notifyflow.outreach import keys


def test_member_keys() -> None:
    assert keys.member_key(12, DeliveryKind.request, 7) == "NOTIF_12:request:7"
    assert keys.member_key(12, DeliveryKind.escalation, 9) == "NOTIF_12:escalation:9"
    assert keys.member_key(3, DeliveryKind.delivery_failed, 4) == "NOTIF_3:delivery_failed:4"


def test_customer_keys() -> None:
    assert keys.customer_key(12, DeliveryKind.answer) == "NOTIF_12:answer:customer"
    template = keys.customer_template_key(12, DeliveryKind.answer)
    assert template == "NOTIF_12:answer:customer:template"
    assert keys.shortened_key(template) == "NOTIF_12:answer:customer:template:shortened"
    assert keys.customer_key(5, DeliveryKind.expiry) == "NOTIF_5:expiry:customer"


def test_inbound_keys() -> None:
    assert keys.admin_reply_key("SM123") == "inbound:SM123:reply"
    assert keys.inbound_message_key("SM123") == "twilio:message:SM123"
    assert keys.inbound_status_key("SM123", "failed") == "twilio:status:SM123:failed"


def test_vocabulary_values_are_the_stored_strings() -> None:
    assert [str(k) for k in (DeliveryKind.expired, DeliveryKind.closed)] == ["expired", "closed"]
    assert {str(c) for c in ChannelName} == {"whatsapp", "instagram", "console"}
    assert {str(m) for m in SendMethod} == {"campaign", "direct"}
    assert {str(r) for r in RecipientKind} == {"customer", "merchant_user"}
    assert {str(r) for r in MessageRole} == {"user", "assistant"}
    # A notice's kind is the notification's final status.
    from notifyflow.models.notification import NotificationStatus

    for status in ("expired", "closed", "delivery_failed"):
        assert DeliveryKind(NotificationStatus(status).value) == status
