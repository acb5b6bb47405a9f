"""Refusal codes shared by the workflow, the starter, the API (HTTP status) and the CLI."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from notifyflow.models.ids import MalformedNotificationId, parse_notification_id
from notifyflow.models.notification import NotificationStatus


class RefusalCode(StrEnum):
    malformed_id = "malformed_id"
    wrong_notification = "wrong_notification"
    not_found = "not_found"
    unknown_type = "unknown_type"
    missing_field = "missing_field"
    not_json = "not_json"
    schema_mismatch = "schema_mismatch"
    already_answered = "already_answered"
    closed = "closed"
    not_allowed = "not_allowed"
    invalid_input = "invalid_input"
    # An answer named an answer template (canned answer) the merchant has not for this type.
    unknown_template = "unknown_template"
    # A duplicate of something that exists (a merchant user's phone, a conversation).
    conflict = "conflict"
    # Not a mistake: the workflow could not take it in time (its worker is busy or away, or its
    # recipients are still being routed). Nothing was changed; the caller may try again.
    not_ready = "not_ready"
    # A correction of a notification whose answer was not delivered (DESIGN §10).
    not_delivered = "not_delivered"


HTTP_STATUS: dict[RefusalCode, int] = {
    RefusalCode.malformed_id: 400,
    RefusalCode.wrong_notification: 400,
    RefusalCode.not_found: 404,
    RefusalCode.unknown_type: 422,
    RefusalCode.missing_field: 422,
    RefusalCode.not_json: 422,
    RefusalCode.schema_mismatch: 422,
    RefusalCode.invalid_input: 422,
    RefusalCode.unknown_template: 422,
    RefusalCode.already_answered: 409,
    RefusalCode.closed: 409,
    RefusalCode.not_allowed: 403,
    RefusalCode.conflict: 409,
    RefusalCode.not_ready: 503,
    RefusalCode.not_delivered: 409,
}

# Seconds a caller should wait before trying a ``not_ready`` call again.
RETRY_AFTER_SECONDS = 5


class NotificationError(Exception):
    """A user's mistake, refused with a clear message and no state change."""

    def __init__(self, code: RefusalCode, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def parse_id(text: object, *, location: str | None = None) -> int:
    """``n`` from ``NOTIF_<n>``, or the ``malformed_id`` refusal (checked before any query or
    RPC runs). ``location``: where the id came from (``"path"``), named in the details."""
    try:
        return parse_notification_id(text)
    except MalformedNotificationId as exc:
        details = (
            [{"in": location, "path": "notification_id", "message": str(exc)}] if location else None
        )
        raise NotificationError(RefusalCode.malformed_id, str(exc), details=details) from None


def refusal_for(
    public: str,
    status: NotificationStatus,
    *,
    allow_multiple_answers: bool = False,
    closing: bool = False,
) -> NotificationError | None:
    """Whether a notification in ``status`` can still be answered (or, with ``closing``,
    closed) by what the database says: None when it can, else the refusal naming its state.
    Closed and expired take nothing; past ``requested`` it takes no further answer unless it
    allows several, and cannot be closed. (A running workflow decides from its own state in
    its update validator; this is the same rule for the callers that read the row.)"""
    if status is NotificationStatus.requested:
        return None
    if status in (NotificationStatus.closed, NotificationStatus.expired):
        code = RefusalCode.closed
    elif allow_multiple_answers and not closing:
        return None
    else:
        code = RefusalCode.already_answered
    verb = "closed" if closing else "answered"
    return NotificationError(code, f"{public} is {status.value} and cannot be {verb}")
