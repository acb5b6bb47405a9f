"""Start the delivery workflow of every webhook event in the outbox.

Events are written in the same transaction as the status change they report; every worker
polls the outbox every DISPATCH_EVERY and starts one WebhookDeliveryWorkflow per new event
(idempotent by workflow id, so two workers dispatching at once never deliver twice)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import WebhookEvent
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.webhooks import WebhookDeliveryInput
from notifyflow.workflows.webhook_delivery import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)

DISPATCH_EVERY = timedelta(seconds=1)
BATCH = 200


def workflow_id(event_id: int) -> str:
    return f"webhook-evt-{event_id}"


async def dispatch_once(client: Client, db: SessionFactory, task_queue: str) -> int:
    async with db() as session:
        events = (
            await session.execute(
                select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.notification_id)
                .where(WebhookEvent.dispatched_at.is_(None))
                .order_by(WebhookEvent.id)
                .limit(BATCH)
            )
        ).all()
    done: list[int] = []
    for event_id, kind, notification_id in events:
        try:
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                WebhookDeliveryInput(event_id=event_id),
                id=workflow_id(event_id),
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"{kind} · {format_notification_id(notification_id)}",
            )
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as exc:
            log.info("webhook dispatch paused: %s", exc.message)
            break
        done.append(event_id)
    if done:
        async with db() as session:
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(done), WebhookEvent.dispatched_at.is_(None))
                .values(dispatched_at=utcnow())
            )
            await session.commit()
    return len(done)


async def run_dispatcher(
    client: Client,
    db: SessionFactory,
    task_queue: str,
    stop: asyncio.Event,
    *,
    every: timedelta = DISPATCH_EVERY,
) -> None:
    while not stop.is_set():
        try:
            await dispatch_once(client, db, task_queue)
        except Exception:
            log.exception("webhook dispatch failed; trying again in %s", every)
        try:
            await asyncio.wait_for(stop.wait(), every.total_seconds())
        except TimeoutError:
            pass
