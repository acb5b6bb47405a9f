"""Carry every recorded notification through to its workflow.

A request is recorded first and its workflow started second (``starter.request_notification``).
Between the two steps the API process can die or Temporal can be away; the row then says
``requested`` with ``workflow_started_at`` NULL. Every worker runs :func:`run_sweeper`, which
every ``NOTIFYFLOW_SWEEP_EVERY_SECONDS`` (10) starts the workflow of each such row older than
``NOTIFYFLOW_SWEEP_GRACE_SECONDS`` (10). Starting is idempotent
(a running workflow is joined; one that already ended is only marked), so several workers
sweeping at once, or a sweep racing the API's own start, never asks anyone twice.

Why a loop in the worker rather than a Temporal Schedule: the sweep is needed exactly when
Temporal has just come back, the loop costs one indexed query per tick and no Temporal actions
(a Schedule would bill a workflow every tick, forever), and it runs where the database, the
client and the settings already are.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select, update
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from notifyflow.config import Settings
from notifyflow.corrections import sweep_corrections
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Notification
from notifyflow.db.types import utcnow
from notifyflow.launch import admin_ids, ensure_started
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationStatus

log = logging.getLogger(__name__)

BATCH = 200


async def sweep_once(
    client: Client,
    db: SessionFactory,
    settings: Settings,
    *,
    grace: timedelta | None = None,
    limit: int = BATCH,
) -> int:
    """Start the workflows of recorded notifications that have none; returns how many rows
    were carried through (started now, or found running or ended and marked). Rows younger
    than ``grace`` (default: NOTIFYFLOW_SWEEP_GRACE_SECONDS) are still being started by the
    request that wrote them."""
    cutoff = utcnow() - (grace if grace is not None else settings.sweep_grace)
    async with db() as session:
        rows = list(
            (
                await session.scalars(
                    select(Notification)
                    .where(
                        Notification.status == NotificationStatus.requested.value,
                        Notification.workflow_started_at.is_(None),
                        Notification.created_at < cutoff,
                    )
                    .order_by(Notification.id)
                    .limit(limit)
                )
            ).all()
        )
        if not rows:
            return 0
        # The active admins, as every other start computes them (launch.admin_ids).
        admins = {m: await admin_ids(session, m) for m in {r.merchant_id for r in rows}}
    done: list[int] = []
    for row in rows:
        public = format_notification_id(row.id)
        try:
            started = await ensure_started(client, row, admins.get(row.merchant_id, []), settings)
        except RPCError as exc:
            if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                # Temporal is still away: the next tick tries again.
                log.info("sweep: %s not started yet: %s", public, exc.message)
            else:
                # Refused (a missing search attribute, a permission): an operator must act.
                log.error("sweep: Temporal refused to start %s: %s", public, exc.message)
            break
        if started:
            log.warning(
                "sweep: %s was recorded at %s without a running workflow; started it",
                public,
                row.created_at.isoformat(),
            )
        done.append(row.id)
    if done:
        async with db() as session:
            await session.execute(
                update(Notification)
                .where(Notification.id.in_(done), Notification.workflow_started_at.is_(None))
                .values(workflow_started_at=utcnow())
            )
            await session.commit()
    return len(done)


async def run_sweeper(
    client: Client,
    db: SessionFactory,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Sweep every ``settings.sweep_every_seconds`` until ``stop`` is set; a failed sweep
    (database away) is logged and retried."""
    every = settings.sweep_every_seconds
    grace = settings.sweep_grace
    while not stop.is_set():
        try:
            await sweep_once(client, db, settings, grace=grace)
            # Corrections recorded while Temporal was away (DESIGN §10).
            await sweep_corrections(client, db, settings, grace=grace)
        except Exception:
            log.exception("sweep failed; trying again in %.1f s", every)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
