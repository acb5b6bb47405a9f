"""The four search attributes (DESIGN §5): the Temporal UI's list is filterable by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

NOTIFICATION_ID = SearchAttributeKey.for_int("NotificationId")
NOTIFICATION_TYPE = SearchAttributeKey.for_keyword("NotificationType")
NOTIFICATION_STATUS = SearchAttributeKey.for_keyword("NotificationStatus")
MERCHANT_ID = SearchAttributeKey.for_int("MerchantId")

SEARCH_ATTRIBUTES = (NOTIFICATION_ID, NOTIFICATION_TYPE, NOTIFICATION_STATUS, MERCHANT_ID)


def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
