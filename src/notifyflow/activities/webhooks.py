"""Webhook delivery activities: one signed POST per attempt, its outcome recorded on the event
and its subscription."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from sqlalchemy import update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifyflow.db.session import SessionFactory, ping_on_checkout
from notifyflow.db.tables import WebhookEvent, WebhookSubscription
from notifyflow.db.types import utcnow
from notifyflow.models.webhooks import WebhookDeliveryInput, WebhookDeliveryResult
from notifyflow.webhooks.addresses import (
    WebhookAddressRefused,
    WebhookAddressUnresolved,
    check_url,
    pinned,
)
from notifyflow.webhooks.payload import event_body
from notifyflow.webhooks.signing import headers

log = logging.getLogger(__name__)

POST_TIMEOUT = 10.0
MAX_ERROR = 500


def _count(outcome: str) -> None:
    """``notifyflow_webhook_attempts{outcome}`` on the worker's SDK metrics endpoint
    (NOTIFYFLOW_WORKER_METRICS_ADDRESS): delivered, refused (a retry follows), gave_up."""
    activity.metric_meter().create_counter(
        "notifyflow_webhook_attempts", "Outbound webhook attempts by outcome"
    ).add(1, {"outcome": outcome})


class WebhookActivities:
    def __init__(self, db: SessionFactory, *, allow_private: bool) -> None:
        self._db = db
        self._allow_private = allow_private
        # trust_env=False: a proxy from the environment would resolve the host itself.
        self._http = httpx.AsyncClient(
            timeout=POST_TIMEOUT, follow_redirects=False, trust_env=False
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, input: WebhookDeliveryInput) -> WebhookDeliveryResult:
        async with self._db() as session:
            event = await session.get(WebhookEvent, input.event_id)
            if event is None:
                raise ApplicationError(
                    f"webhook event {input.event_id} does not exist",
                    type="WebhookRefused",
                    non_retryable=True,
                )
            subscription = await session.get(WebhookSubscription, event.subscription_id)
            assert subscription is not None
            if subscription.deleted_at is not None:
                return WebhookDeliveryResult(
                    event_id=event.id,
                    delivered=False,
                    reason="the subscription was deleted",
                    attempts=event.attempts,
                )
            if event.body is None:
                # Fixed at the first attempt: every retry sends the same body.
                event.body = await event_body(self._db, event)
                await session.commit()
            body, url, secret = event.body, subscription.url, subscription.secret
        try:
            address = await check_url(url, allow_private=self._allow_private)
        except WebhookAddressUnresolved as exc:
            # A DNS hiccup: retried like a refusal by the receiver.
            await self._failed(input.event_id, str(exc))
            raise ApplicationError(str(exc), type="WebhookFailed") from None
        except WebhookAddressRefused as exc:
            await self._failed(input.event_id, str(exc))
            raise ApplicationError(str(exc), type="WebhookRefused", non_retryable=True) from None
        message_id = f"evt_{input.event_id}"
        # Connect to the address just checked, never to a fresh resolution of the name.
        target, host_header, server_name = pinned(url, address)
        sent = headers(secret, message_id, int(time.time()), body)
        try:
            response = await self._http.post(
                target,
                content=body,
                headers={**sent, "host": host_header},
                extensions={"sni_hostname": server_name},
            )
            ok, error = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{exc.__class__.__name__}: {exc}"
        if not ok:
            _count("refused")
            await self._failed(input.event_id, error)
            raise ApplicationError(
                f"the receiver did not accept {message_id}: {error}", type="WebhookFailed"
            )
        _count("delivered")
        attempts = await self._delivered(input.event_id)
        log.info("webhook %s delivered to subscription after %d attempt(s)", message_id, attempts)
        return WebhookDeliveryResult(event_id=input.event_id, delivered=True, attempts=attempts)

    @activity.defn(name="webhook_gave_up")
    async def webhook_gave_up(self, input: WebhookDeliveryResult) -> None:
        async with self._db() as session:
            event = await session.get(WebhookEvent, input.event_id)
            if event is None or event.failed_at is not None:
                return
            _count("gave_up")
            now = utcnow()
            event.failed_at = now
            await session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == event.subscription_id)
                .values(failed_events=WebhookSubscription.failed_events + 1)
            )
            await session.commit()
        log.warning("webhook evt_%d given up: %s", input.event_id, input.reason)

    async def _failed(self, event_id: int, error: str) -> None:
        error = error[:MAX_ERROR]
        async with self._db() as session:
            now = utcnow()
            event = await session.get(WebhookEvent, event_id)
            assert event is not None
            event.attempts += 1
            event.last_error = error
            await session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == event.subscription_id)
                .values(last_error=f"evt_{event_id}: {error}", last_error_at=now)
            )
            await session.commit()

    async def _delivered(self, event_id: int) -> int:
        # The receiver has it: the connection is tested first however recently it was used (a
        # dropped one would fail the attempt, and its retry would deliver the event again).
        with ping_on_checkout():
            return await self._record_delivered(event_id)

    async def _record_delivered(self, event_id: int) -> int:
        async with self._db() as session:
            now = utcnow()
            event = await session.get(WebhookEvent, event_id)
            assert event is not None
            event.attempts += 1
            event.delivered_at = now
            await session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == event.subscription_id)
                .values(last_success_at=now)
            )
            await session.commit()
            return event.attempts

    def all(self) -> list[Any]:
        return [self.deliver_webhook, self.webhook_gave_up]
