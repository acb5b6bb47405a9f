"""The four search attributes (DESIGN §5): the Temporal UI's list is filterable by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

NOTIFICATION_ID = SearchAttributeKey.for_int("NotificationId")
NOTIFICATION_TYPE = SearchAttributeKey.for_keyword("NotificationType")
NOTIFICATION_STATUS = SearchAttributeKey.for_keyword("NotificationStatus")
MERCHANT_ID = SearchAttributeKey.for_int("MerchantId")

SEARCH_ATTRIBUTES = (NOTIFICATION_ID, NOTIFICATION_TYPE, NOTIFICATION_STATUS, MERCHANT_ID)


def dev_server_flags() -> list[str]:
    """Flags for ``temporal server start-dev`` (``make run``, the tests, the bench): the four
    search attributes, and eager activity execution, which hands an activity scheduled by a
    workflow task straight back to the worker that completed it (one poll round trip less
    between an answer and its delivery). docker-compose sets the same in its dynamic config."""
    flags: list[str] = ["--dynamic-config-value", "system.enableActivityEagerExecution=true"]
    for key in SEARCH_ATTRIBUTES:
        kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
