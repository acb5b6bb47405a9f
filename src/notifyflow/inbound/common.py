"""What both webhooks share: an event handled once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from notifyflow.db.tables import (
    InboundEvent,
)

log = logging.getLogger(__name__)


GetClient = Callable[[], Awaitable[Client]]


async def seen(session: AsyncSession, key: str) -> bool:
    found = await session.scalar(select(InboundEvent.id).where(InboundEvent.event_key == key))
    return found is not None
