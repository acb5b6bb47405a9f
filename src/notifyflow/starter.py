"""The one client-side API: request, answer, close, get, list.

The CLI, the HTTP API and the LLM tools are thin layers over these functions.
(Stub signatures: the implementation lands with the lifecycle issue.)
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from notifyflow.db.session import SessionFactory
from notifyflow.models.views import NotificationView, TimelineEntry
from notifyflow.models.workflow_io import AnswerAccepted, AnswerSource


async def request_notification(
    client: Client,
    db: SessionFactory,
    *,
    type: str,
    conversation_id: int,
    context: dict[str, Any],
    idempotency_key: str | None = None,
) -> NotificationView:
    """Validate, record and start a notification. Raises NotificationError on bad input."""
    raise NotImplementedError


async def answer_notification(
    client: Client,
    db: SessionFactory,
    notification_id: str,
    *,
    answered_by: int,
    answer: dict[str, Any] | str,
    source: AnswerSource = AnswerSource.api,
) -> AnswerAccepted:
    """Submit an answer through the workflow's update; returns once accepted."""
    raise NotImplementedError


async def close_notification(
    client: Client, db: SessionFactory, notification_id: str, *, reason: str | None = None
) -> NotificationView:
    raise NotImplementedError


async def get_notification(db: SessionFactory, notification_id: str) -> NotificationView:
    raise NotImplementedError


async def list_notifications(
    db: SessionFactory,
    *,
    status: str | None = None,
    type: str | None = None,
    merchant_id: int | None = None,
    limit: int = 100,
) -> list[NotificationView]:
    raise NotImplementedError


async def notification_timeline(db: SessionFactory, notification_id: str) -> list[TimelineEntry]:
    raise NotImplementedError
