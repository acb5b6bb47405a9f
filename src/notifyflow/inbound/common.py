"""What both webhooks share: an event handled once, and a workflow started once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from notifyflow.db.tables import (
    InboundEvent,
)

log = logging.getLogger(__name__)


GetClient = Callable[[], Awaitable[Client]]


async def seen(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(InboundEvent.id).where(InboundEvent.event_key == key))
    return found is not None


async def start_once(
    client: Client,
    run: Any,
    input: Any,
    *,
    workflow_id: str,
    task_queue: str,
    summary: str,
) -> None:
    """Start once: a running one is joined, a finished one is not started again."""
    try:
        await client.start_workflow(
            run,
            input,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass
