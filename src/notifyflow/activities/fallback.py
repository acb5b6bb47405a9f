"""After the answer left: what a Twilio status callback can still change.

- ``send_answer_template``: the free-form answer came back failed with 63016 (the customer's
  24-hour window had closed after all). The answered campaign goes out instead, rendered with
  the localized fragment stored at delivery time, under the ledger key the main delivery uses
  for its own template path (``NOTIF_<n>:answer:customer:template``): whichever path gets
  there first, the customer receives one template.
- ``record_delivery_failure``: the answer failed for good (63005, 63014, …): the notification
  becomes ``delivery_failed`` with the reason, and the admin who answered is told.

Both wait for the main delivery to finish writing its outcome first (a callback can beat it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifyflow.activities.common import non_retryable, with_log_context
from notifyflow.activities.notification import delivery_failed_notice
from notifyflow.channels.base import SendError
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Merchant,
    MerchantUser,
    Notification,
    NotificationAnswer,
)
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.inbound import FallbackInput, FallbackResult
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
    NotificationType,
)
from notifyflow.models.vocabulary import DeliveryKind, SendMethod
from notifyflow.outreach.contacts import load_contact
from notifyflow.outreach.service import Notice, Outreach, customer_target
from notifyflow.outreach.templates import TemplateMissing, clean_variable, find_template
from notifyflow.webhooks import events as webhook_events

log = logging.getLogger(__name__)


class FallbackActivities:
    """The worker's database and outreach: nothing of the lifecycle's activities."""

    def __init__(self, db: SessionFactory, outreach: Outreach) -> None:
        self._db = db
        self._outreach = outreach

    async def _settled(self, notification_id: int) -> Notification:
        """The notification once the main delivery has written its outcome."""
        async with self._db() as session:
            row = await session.get(Notification, notification_id)
        if row is None:
            raise non_retryable(f"notification {notification_id} does not exist")
        if row.status in (NotificationStatus.requested.value, NotificationStatus.answered.value):
            # Retried with backoff by Temporal: the delivery activity is still running.
            raise ApplicationError(
                f"{format_notification_id(notification_id)}: the answer's delivery is still "
                "in progress",
                type="DeliveryInProgress",
            )
        return row

    @activity.defn(name="send_answer_template")
    @with_log_context
    async def send_answer_template(self, input: FallbackInput) -> FallbackResult:
        public = format_notification_id(input.notification_id)
        notification = await self._settled(input.notification_id)
        if notification.status == NotificationStatus.delivery_failed.value:
            # Failed already (maybe by an earlier attempt of this very activity).
            return await self._tell_answerer(notification)
        if notification.status != NotificationStatus.delivered.value:
            log.info("%s: no template fallback, it is %s", public, notification.status)
            return _result(notification)
        async with self._db() as session:
            contact = await load_contact(session, notification)
            cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
            try:
                template = await find_template(
                    session,
                    cfg.answered_campaign.value,
                    contact.language,
                    contact.merchant.id,
                    contact.merchant.default_language,
                )
            except TemplateMissing as exc:
                return await self._fail(notification, str(exc))
        fragment = notification.localized_fragment or clean_variable(
            notification.localized_sentence or ""
        )
        try:
            # The key the main delivery uses for its own template path: whichever path gets
            # there first, the customer receives one template.
            sent = await self._outreach.send_customer_template(
                notification.id,
                DeliveryKind.answer,
                customer_target(contact),
                template,
                fragment,
                other_data={"fallback_for": input.provider_message_id},
                shorten_on_refusal=False,
            )
        except SendError as err:
            if err.retryable or err.ambiguous:
                raise
            return await self._fail(
                notification, f"the template fallback was refused: {err.code}: {err.message}"
            )
        async with self._db() as session:
            row = await session.get(Notification, notification.id)
            assert row is not None
            row.delivery_method = SendMethod.campaign
            if not sent.duplicate:
                row.delivered_at = utcnow()
            await session.commit()
        log.info(
            "%s: free-form answer refused after sending (%s); template %s",
            public,
            input.error_code,
            "already sent" if sent.duplicate else "sent",
        )
        return FallbackResult(
            notification_id=public,
            status=NotificationStatus.delivered.value,
            method=SendMethod.campaign,
            sent=not sent.duplicate,
        )

    @activity.defn(name="record_delivery_failure")
    @with_log_context
    async def record_delivery_failure(self, input: FallbackInput) -> FallbackResult:
        notification = await self._settled(input.notification_id)
        if notification.status == NotificationStatus.delivered.value:
            return await self._fail(notification, input.reason or f"error {input.error_code}")
        if notification.status == NotificationStatus.delivery_failed.value:
            return await self._tell_answerer(notification)
        return _result(notification)

    async def _fail(self, notification: Notification, reason: str) -> FallbackResult:
        """``delivery_failed`` with the reason, then the answerer is told."""
        async with self._db() as session:
            row = await session.get(Notification, notification.id)
            assert row is not None
            row.status = NotificationStatus.delivery_failed.value
            row.failure_reason = reason
            await webhook_events.enqueue(
                session,
                notification_id=row.id,
                merchant_id=row.merchant_id,
                event=webhook_events.EventType.delivery_failed,
            )
            await session.commit()
        log.warning(
            "%s: the answer could not be delivered: %s",
            format_notification_id(notification.id),
            reason,
        )
        return await self._tell_answerer(row)

    async def _tell_answerer(self, notification: Notification) -> FallbackResult:
        """Idempotent: the ledger key is the one every delivery failure notice uses, so an
        answerer told by the main delivery (or an earlier attempt) is not told twice."""
        public = format_notification_id(notification.id)
        reason = notification.failure_reason or "unknown reason"
        async with self._db() as session:
            merchant = await session.get(Merchant, notification.merchant_id)
            assert merchant is not None
            answerer_id = notification.answered_by or await session.scalar(
                select(NotificationAnswer.answered_by)
                .where(
                    NotificationAnswer.notification_id == notification.id,
                    NotificationAnswer.accepted.is_(True),
                )
                .limit(1)
            )
            answerer = await session.get(MerchantUser, answerer_id) if answerer_id else None
        if answerer is not None:
            message = delivery_failed_notice(public, reason)
            await self._outreach.notify_members(
                notification.id,
                merchant,
                [answerer],
                Notice.plain(DeliveryKind.delivery_failed, message),
            )
        return FallbackResult(
            notification_id=public,
            status=NotificationStatus.delivery_failed.value,
            method=notification.delivery_method,
            reason=reason,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.send_answer_template, self.record_delivery_failure]


def _result(notification: Notification) -> FallbackResult:
    """Nothing to do: the notification as it stands."""
    return FallbackResult(
        notification_id=format_notification_id(notification.id),
        status=notification.status,
        method=notification.delivery_method,
        reason=f"the notification is {notification.status}",
    )
