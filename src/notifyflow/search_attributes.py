"""The search attributes (DESIGN §5): the Temporal UI's list is filterable by them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

NOTIFICATION_ID = SearchAttributeKey.for_int("NotificationId")
NOTIFICATION_TYPE = SearchAttributeKey.for_keyword("NotificationType")
NOTIFICATION_STATUS = SearchAttributeKey.for_keyword("NotificationStatus")
MERCHANT_ID = SearchAttributeKey.for_int("MerchantId")
# normal | urgent (DESIGN §10).
NOTIFICATION_PRIORITY = SearchAttributeKey.for_keyword("NotificationPriority")

SEARCH_ATTRIBUTES = (
    NOTIFICATION_ID,
    NOTIFICATION_TYPE,
    NOTIFICATION_STATUS,
    MERCHANT_ID,
    NOTIFICATION_PRIORITY,
)
