"""Merchant webhook subscriptions: create (the secret is shown once), list, delete."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Merchant, WebhookSubscription
from notifyflow.db.types import utcnow
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.webhooks.addresses import WebhookAddressRefused, check_url
from notifyflow.webhooks.events import EventType
from notifyflow.webhooks.signing import new_secret

MAX_SUBSCRIPTIONS = 20


class WebhookCreate(BaseModel):
    url: str = Field(min_length=1, max_length=2000, examples=["https://example.com/hooks"])
    events: list[EventType] = Field(
        min_length=1, max_length=len(EventType), examples=[["notification.delivered"]]
    )


class WebhookView(BaseModel):
    id: int
    merchant_id: int
    url: str
    events: list[str]
    created_at: datetime
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failed_events: int = 0


class WebhookCreated(WebhookView):
    # Shown once: the receiver verifies signatures with it.
    secret: str


def _view(row: WebhookSubscription) -> WebhookView:
    return WebhookView(
        id=row.id,
        merchant_id=row.merchant_id,
        url=row.url,
        events=list(row.events),
        created_at=row.created_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        failed_events=row.failed_events,
    )


def _not_found(what: str) -> NotificationError:
    return NotificationError(RefusalCode.not_found, f"{what} does not exist")


async def create(
    db: SessionFactory, merchant_id: int, body: WebhookCreate, *, allow_private: bool
) -> WebhookCreated:
    try:
        await check_url(body.url, allow_private=allow_private)
    except WebhookAddressRefused as exc:
        raise NotificationError(
            RefusalCode.invalid_input,
            str(exc),
            details=[{"in": "body", "path": "/url", "message": str(exc)}],
        ) from None
    async with db() as session:
        if await session.get(Merchant, merchant_id) is None:
            raise NotificationError(
                RefusalCode.not_found,
                f"merchant {merchant_id} does not exist",
                details={"merchant_id": merchant_id},
            )
        # One conditional UPDATE both counts and enforces the limit: two creates racing
        # for the last place meet on the merchant row, and one of them is refused.
        room = await session.execute(
            update(Merchant)
            .where(
                Merchant.id == merchant_id,
                Merchant.webhook_subscriptions < MAX_SUBSCRIPTIONS,
            )
            .values(webhook_subscriptions=Merchant.webhook_subscriptions + 1)
            .execution_options(synchronize_session=False)
        )
        if not room.rowcount:  # type: ignore[attr-defined]
            raise NotificationError(
                RefusalCode.conflict,
                f"merchant {merchant_id} already has {MAX_SUBSCRIPTIONS} webhooks",
            )
        row = WebhookSubscription(
            merchant_id=merchant_id,
            url=body.url,
            events=sorted({e.value for e in body.events}),
            secret=new_secret(),
            created_at=utcnow(),
            failed_events=0,
        )
        session.add(row)
        await session.commit()
    return WebhookCreated(**_view(row).model_dump(), secret=row.secret)


async def list_for(db: SessionFactory, merchant_id: int) -> list[WebhookView]:
    async with db() as session:
        if await session.get(Merchant, merchant_id) is None:
            raise NotificationError(
                RefusalCode.not_found,
                f"merchant {merchant_id} does not exist",
                details={"merchant_id": merchant_id},
            )
        rows = (
            await session.scalars(
                select(WebhookSubscription)
                .where(
                    WebhookSubscription.merchant_id == merchant_id,
                    WebhookSubscription.deleted_at.is_(None),
                )
                .order_by(WebhookSubscription.id)
            )
        ).all()
    return [_view(r) for r in rows]


async def delete(db: SessionFactory, merchant_id: int, webhook_id: int) -> None:
    """Stop deliveries at once (events not yet delivered are dropped by their workflow)."""
    async with db() as session:
        # Conditional, so two deletes racing count the subscription down once.
        gone = await session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id == webhook_id,
                WebhookSubscription.merchant_id == merchant_id,
                WebhookSubscription.deleted_at.is_(None),
            )
            .values(deleted_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if not gone.rowcount:  # type: ignore[attr-defined]
            raise _not_found(f"webhook {webhook_id}")
        await session.execute(
            update(Merchant)
            .where(Merchant.id == merchant_id, Merchant.webhook_subscriptions > 0)
            .values(webhook_subscriptions=Merchant.webhook_subscriptions - 1)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
