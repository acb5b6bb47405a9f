"""The customer's follow-ups about an open notification (DESIGN §8): kept on the notification
(``context.customer_messages``: the timeline and the API show them) and forwarded to every
recipient by the window rule, one ledger key per follow-up and person."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from temporalio import activity

from notifyflow.activities.common import with_log_context
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Merchant, Notification
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import Campaign
from notifyflow.models.vocabulary import DeliveryKind
from notifyflow.models.workflow_io import ForwardInput
from notifyflow.outreach.members import merchant_users
from notifyflow.outreach.service import Notice, Outreach

log = logging.getLogger(__name__)


def follow_up_text(public: str, text: str) -> str:
    return f"The customer wrote again about {public}: {text}"


class FollowUpActivities:
    def __init__(self, db: SessionFactory, outreach: Outreach) -> None:
        self._db = db
        self._outreach = outreach

    @activity.defn(name="forward_customer_message")
    @with_log_context
    async def forward_customer_message(self, input: ForwardInput) -> int:
        public = format_notification_id(input.notification_id)
        async with self._db() as session:
            notification = await session.get(Notification, input.notification_id)
            assert notification is not None
            merchant = await session.get(Merchant, notification.merchant_id)
            assert merchant is not None
            kept: list[dict[str, Any]] = list(notification.context.get("customer_messages", []))
            if all(m.get("seq") != input.seq for m in kept):
                kept.append(
                    {
                        "seq": input.seq,
                        "text": input.text,
                        "at": input.at.isoformat(),
                        # Written now, after the workflow took it ("at"): the live stream's order.
                        "recorded_at": utcnow().isoformat(),
                    }
                )
                await session.execute(
                    update(Notification)
                    .where(Notification.id == notification.id)
                    .values(context={**notification.context, "customer_messages": kept})
                )
                await session.commit()
        users = [u for u in await merchant_users(self._db, merchant.id) if u.id in input.recipients]
        sent = await self._outreach.notify_members(
            input.notification_id,
            merchant,
            users,
            Notice(
                DeliveryKind.customer_message,
                follow_up_text(public, input.text),
                Campaign.notification_follow_up,
                [public, input.text],
                part=input.seq,
            ),
        )
        log.info("%s: follow-up %d forwarded to %d recipient(s)", public, input.seq, sent)
        return sent

    def all(self) -> list[Any]:
        return [self.forward_customer_message]
