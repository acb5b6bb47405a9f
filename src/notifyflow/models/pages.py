"""Cursor pagination for every list route: ``{items, next_cursor}``.

A cursor is opaque to clients: base64url of a small JSON document naming the list it belongs
to and the sort key of the last item served (keyset pagination: stable under inserts, one
indexed range scan per page, no OFFSET). A cursor from another list, or one that does not
decode, is 422 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from notifyflow.models.errors import NotificationError, RefusalCode

T = TypeVar("T")

# The documented maximum page size of every list route (README: "Lists and pages").
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
_MAX_CURSOR = 512


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None,
        description="Pass as ?cursor= for the next page; null on the last page",
    )


def encode_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps({"l": kind, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _refuse(message: str) -> NotificationError:
    return NotificationError(
        RefusalCode.invalid_input,
        f"cursor: {message}",
        details=[{"in": "query", "path": "cursor", "message": message}],
    )


def decode_cursor(kind: str, cursor: str | None) -> list[Any] | None:
    """The sort key a cursor of list ``kind`` carries; None for the first page."""
    if cursor is None or not cursor.strip():
        return None
    text = cursor.strip()
    if len(text) > _MAX_CURSOR:
        raise _refuse("is not a cursor this API issued")
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _refuse("is not a cursor this API issued") from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list):
        raise _refuse("is not a cursor this API issued")
    if data.get("l") != kind:
        raise _refuse("belongs to another list")
    key: list[Any] = data["k"]
    return key


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise NotificationError(
            RefusalCode.invalid_input,
            f"limit: must be between 1 and {MAX_PAGE_SIZE}",
            details=[{"in": "query", "path": "limit", "message": f"must be 1 to {MAX_PAGE_SIZE}"}],
        )
    return limit


def int_key(key: list[Any] | None, size: int = 1) -> list[int] | None:
    """A cursor key of ``size`` int32 ids, or a 422."""
    if key is None:
        return None
    if len(key) != size or not all(
        isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= 2**31 - 1 for k in key
    ):
        raise _refuse("is not a cursor this API issued")
    return key
