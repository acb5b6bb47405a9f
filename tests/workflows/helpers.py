"""Small helpers shared by the lifecycle tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from temporalio.client import Client

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Delivery, Message, Notification
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.workflow_io import NotificationOutcome


async def wait_status(
    db: SessionFactory, public_id: str, statuses: set[str], timeout: float = 20.0
) -> Notification:
    """Poll the database until the notification reaches one of ``statuses``."""
    n = parse_notification_id(public_id)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with db() as session:
            row = await session.get(Notification, n)
            assert row is not None
            if row.status in statuses:
                return row
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{public_id} stayed {row.status}, wanted {statuses}")
        await asyncio.sleep(0.05)


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``predicate()`` holds (a send recorded, a row written), or fail the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def result(client: Client, public_id: str) -> NotificationOutcome:
    handle = client.get_workflow_handle(public_id, result_type=NotificationOutcome)
    return await handle.result()


async def deliveries(db: SessionFactory, public_id: str) -> list[Delivery]:
    n = parse_notification_id(public_id)
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(Delivery).where(Delivery.notification_id == n).order_by(Delivery.id)
                )
            ).all()
        )


async def messages(db: SessionFactory, conversation_id: int) -> list[Message]:
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation_id)
                    .order_by(Message.id)
                )
            ).all()
        )


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value)
