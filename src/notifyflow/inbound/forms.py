"""The fields of Twilio's webhooks that matter here, read from the signed form: a form
without them is refused (422) before anything is looked up."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from notifyflow.models.directory import normalize_phone
from notifyflow.models.errors import NotificationError, RefusalCode

log = logging.getLogger(__name__)


# Why a message failed, for the notification's failure reason and the admin's notice.
TWILIO_ERRORS: dict[str, str] = {
    "63016": "the customer's 24-hour WhatsApp window had closed",
    "63005": "WhatsApp refused the message, or the number is not a WhatsApp user",
    "63014": "the customer blocked the business or opted out",
    "63013": "WhatsApp's channel policy refused a template variable",
    "63021": "the template with its variables is too long",
    "63028": "the template's variable count does not match",
    "63024": "the recipient is not a valid WhatsApp user",
    "63003": "the recipient's number is not reachable on WhatsApp",
    "30003": "the customer's phone is unreachable",
    "30005": "the customer's number is unknown",
    "30006": "the customer's number cannot receive the message",
    "30007": "the message was filtered by the carrier",
    "30008": "an unknown delivery error",
}


_SID = re.compile(r"^[A-Za-z]{2}[A-Za-z0-9]{1,62}$")


_MAX_BODY = 20_000


class WebhookInputError(NotificationError):
    """A signed webhook without the fields it needs (422)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(
            RefusalCode.invalid_input,
            message,
            details=[{"in": "body", "path": f"/{field}", "message": message}],
        )


def twilio_reason(code: str | None, status: str = "failed") -> str:
    """``63014: the customer blocked the business or opted out`` — for people to read."""
    if not code:
        return f"Twilio reported the message {status}"
    return f"{code}: {TWILIO_ERRORS.get(code, f'Twilio error {code}')}"


def _address(value: str | None) -> str | None:
    """``whatsapp:+1555…`` → ``+1555…``; None when it is no phone number."""
    if not value:
        return None
    try:
        return normalize_phone(value)
    except ValueError:
        return None


def _sid(form: Mapping[str, str], field: str, *, required: bool = True) -> str | None:
    value = (form.get(field) or "").strip()
    if not value:
        if required:
            raise WebhookInputError(f"{field} is required", field)
        return None
    if not _SID.match(value):
        raise WebhookInputError(f"{field} is not a Twilio SID", field)
    return value


@dataclass(frozen=True)
class InboundMessage:
    """The fields of Twilio's inbound-message webhook that matter here."""

    message_sid: str
    sender: str | None  # From, as E.164 (None: not a phone number)
    to: str | None  # To: the merchant's WhatsApp number, as E.164
    body: str
    quoted_sid: str | None = None  # OriginalRepliedMessageSid
    profile_name: str | None = None
    # A quick-reply tap: the button's id (ButtonPayload; its title arrives as Body/ButtonText).
    button_payload: str | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> InboundMessage:
        sid = _sid(form, "MessageSid")
        assert sid is not None
        body = (form.get("Body") or "").replace("\x00", "")[:_MAX_BODY]
        try:
            quoted = _sid(form, "OriginalRepliedMessageSid", required=False)
        except WebhookInputError:
            quoted = None
        profile = (form.get("ProfileName") or "").replace("\x00", "").strip()[:200] or None
        payload = (form.get("ButtonPayload") or "").replace("\x00", "").strip()[:200] or None
        return cls(
            message_sid=sid,
            sender=_address(form.get("From")),
            to=_address(form.get("To")),
            body=body,
            quoted_sid=quoted,
            profile_name=profile,
            button_payload=payload,
        )


@dataclass(frozen=True)
class StatusCallback:
    """The fields of Twilio's message status callback that matter here."""

    message_sid: str
    status: str
    error_code: str | None = None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> StatusCallback:
        sid = _sid(form, "MessageSid")
        assert sid is not None
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        if not status:
            raise WebhookInputError("MessageStatus is required", "MessageStatus")
        if len(status) > 16 or not status.isalpha():
            raise WebhookInputError("MessageStatus is not a message status", "MessageStatus")
        code = (form.get("ErrorCode") or "").strip()
        if code and (len(code) > 16 or not code.isdigit()):
            raise WebhookInputError("ErrorCode is not a number", "ErrorCode")
        return cls(message_sid=sid, status=status, error_code=code or None)
