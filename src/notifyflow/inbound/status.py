"""A message status callback: the delivery row moves forward once (never backward); a failed
customer answer starts its fallback."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from temporalio.common import WorkflowIDConflictPolicy

from notifyflow.channels.base import FAILED_STATUSES, closes_window
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Delivery,
    InboundEvent,
)
from notifyflow.db.types import utcnow
from notifyflow.inbound.common import GetClient, seen
from notifyflow.inbound.forms import StatusCallback, twilio_reason
from notifyflow.launch import start_once
from notifyflow.models.ids import format_notification_id
from notifyflow.models.inbound import FallbackAction, FallbackInput
from notifyflow.models.vocabulary import (
    ChannelName,
    DeliveryKind,
    RecipientKind,
    SendMethod,
)
from notifyflow.outreach import keys
from notifyflow.workflows.fallback import FallbackDeliveryWorkflow, fallback_workflow_id

log = logging.getLogger(__name__)


# A status callback can overtake the write of the provider id it refers to (Twilio answers the
# send, then calls back within milliseconds): wait this long for the row to show up.
STATUS_MATCH_WAIT = 3.0


STATUS_MATCH_POLL = 0.1


# A send claimed in the ledger this recently and not yet recorded may be the one called back.
IN_FLIGHT = timedelta(minutes=1)


# Twilio's message statuses in the order they happen; a callback never moves a row backward.
# A failure outranks "sent" (it happened after) but not "delivered" or "read".
STATUS_RANK: dict[str, int] = {
    "pending": 0,
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 1,
    "sent": 2,
    "failed": 3,
    "undelivered": 3,
    "delivered": 4,
    "read": 5,
}


class StatusOutcome(StrEnum):
    updated = "updated"
    duplicate = "duplicate"
    unknown = "unknown"  # no delivery with that MessageSid (not one of our sends)
    ignored = "ignored"  # a status we do not track


async def receive_status(
    db: SessionFactory,
    get_client: GetClient,
    callback: StatusCallback,
    *,
    task_queue: str,
    wait: float | None = None,
) -> StatusOutcome:
    """Apply a status callback to its delivery row once; a failed customer answer starts the
    fallback (63016) or the failure handling (anything else)."""
    if callback.status not in STATUS_RANK:
        return StatusOutcome.ignored
    key = keys.inbound_status_key(callback.message_sid, callback.status)
    async with db() as session:
        if await seen(session, key):
            return StatusOutcome.duplicate
    delivery = await _delivery_for(
        db, callback.message_sid, STATUS_MATCH_WAIT if wait is None else wait
    )
    if delivery is None:
        log.info("status %s for unknown message %s", callback.status, callback.message_sid)
        return StatusOutcome.unknown
    failed = callback.status in FAILED_STATUSES
    reason = twilio_reason(callback.error_code, callback.status) if failed else None
    action = _action_for(delivery, callback)
    if action is not None:
        client = await get_client()
        await start_once(
            client,
            FallbackDeliveryWorkflow.run,
            FallbackInput(
                notification_id=delivery.notification_id,
                action=action,
                provider_message_id=callback.message_sid,
                error_code=callback.error_code,
                reason=reason,
            ),
            id=fallback_workflow_id(delivery.notification_id, action),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"{format_notification_id(delivery.notification_id)} · answer "
            f"{callback.status} ({callback.error_code or 'no code'}) · {action.value}",
        )
    rank = STATUS_RANK[callback.status]
    lower = [status for status, r in STATUS_RANK.items() if r < rank]
    values: dict[str, Any] = {"status": callback.status, "updated_at": utcnow()}
    if failed:
        values["error_code"] = callback.error_code or callback.status
        values["error_message"] = reason
    async with db() as session:
        session.add(InboundEvent(event_key=key))
        try:
            # Conditional: callbacks arriving out of order or together never move it backward.
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.status.in_(lower))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return StatusOutcome.duplicate
    return StatusOutcome.updated


def _action_for(delivery: Delivery, callback: StatusCallback) -> FallbackAction | None:
    """Only the customer's answer has a fallback; other sends just record their status."""
    if callback.status not in FAILED_STATUSES:
        return None
    if (delivery.recipient_kind, delivery.kind, delivery.channel) != (
        RecipientKind.customer,
        DeliveryKind.answer,
        ChannelName.whatsapp,
    ):
        return None
    if closes_window(callback.error_code) and delivery.method == SendMethod.direct:
        return FallbackAction.template
    return FallbackAction.fail


async def _delivery_for(db: SessionFactory, message_sid: str, wait: float) -> Delivery | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        async with db() as session:
            row = await session.scalar(
                select(Delivery)
                .where(Delivery.provider_message_id == message_sid)
                .order_by(Delivery.id)
                .limit(1)
            )
        if row is not None or loop.time() >= deadline:
            return row
        # Only worth waiting for if one of our sends is still between accept and record.
        async with db() as session:
            in_flight = await session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.provider_message_id.is_(None),
                    Delivery.status == "pending",
                    Delivery.updated_at >= utcnow() - IN_FLIGHT,
                )
            )
        if not in_flight:
            return None
        await asyncio.sleep(STATUS_MATCH_POLL)
