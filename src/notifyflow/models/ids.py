"""The public notification id: ``NOTIF_<n>``, ``n`` a positive int32 (DESIGN §2)."""

from __future__ import annotations

import re

NOTIFICATION_PREFIX = "NOTIF_"
INT32_MAX = 2_147_483_647
_NOTIF_RE = re.compile(r"^NOTIF_([1-9][0-9]{0,9})$")


class MalformedNotificationId(ValueError):
    """The text is not ``NOTIF_<n>`` with ``n`` in 1 … 2147483647."""


def parse_notification_id(text: object) -> int:
    """Return ``n`` from ``NOTIF_<n>``; surrounding whitespace is ignored.

    Checked before any query runs, so an overflowing or odd id never reaches the database.
    """
    if not isinstance(text, str):
        raise MalformedNotificationId("a notification id is a string like NOTIF_123")
    match = _NOTIF_RE.match(text.strip())
    if not match:
        raise MalformedNotificationId(
            f"{text.strip()[:40]!r} is not a notification id: expected NOTIF_<n>, "
            "n a positive whole number without leading zeros"
        )
    value = int(match.group(1))
    if value > INT32_MAX:
        raise MalformedNotificationId(f"notification number {value} is out of range")
    return value


def format_notification_id(n: int) -> str:
    return f"{NOTIFICATION_PREFIX}{n}"


def workflow_id_for(n: int) -> str:
    """Workflow ids equal the public id, so an operator finds NOTIF_12 in the UI by typing it."""
    return format_notification_id(n)
