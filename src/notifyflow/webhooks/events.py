"""Webhook event types and the outbox: an event row per subscription that wants it, written
in the same transaction as the status change it reports."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.tables import WebhookEvent, WebhookSubscription
from notifyflow.db.types import utcnow


class EventType(StrEnum):
    requested = "notification.requested"
    answered = "notification.answered"
    delivered = "notification.delivered"
    delivery_failed = "notification.delivery_failed"
    expired = "notification.expired"
    closed = "notification.closed"


def event_for_status(status: str) -> EventType:
    return EventType(f"notification.{status}")


async def enqueue(
    session: AsyncSession,
    *,
    notification_id: int,
    merchant_id: int,
    event: EventType,
    subscriptions: int | None = None,
) -> int:
    """Add an outbox row for every live subscription of the merchant that wants ``event``;
    the caller commits. ``subscriptions``: the merchant row's ``webhook_subscriptions`` when
    the caller has loaded it: with 0 (the common case) nothing is read at all. Returns the
    rows added."""
    if subscriptions == 0:
        return 0
    live = (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.merchant_id == merchant_id,
                WebhookSubscription.deleted_at.is_(None),
            )
        )
    ).all()
    now = utcnow()
    added = 0
    for subscription in live:
        if event.value in subscription.events:
            session.add(
                WebhookEvent(
                    subscription_id=subscription.id,
                    notification_id=notification_id,
                    type=event.value,
                    created_at=now,
                    attempts=0,
                )
            )
            added += 1
    return added
