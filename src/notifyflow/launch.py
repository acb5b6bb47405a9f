"""Starting a notification's workflow, once: the client API and the sweeper both come here.

The workflow id is the public id (``NOTIF_<n>``) and duplicates are rejected, so a second start
joins (or finds finished) the first; its input is built from the recorded row alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypedDict

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from notifyflow.config import Settings
from notifyflow.db.tables import MerchantUser, Notification
from notifyflow.models.ids import format_notification_id, workflow_id_for
from notifyflow.models.notification import NOTIFICATION_CONFIG, NotificationType, headline
from notifyflow.models.workflow_io import (
    CloseRequest,
    NotificationWorkflowInput,
    Priority,
    ServiceLevel,
    Timing,
)
from notifyflow.workflows import policies
from notifyflow.workflows.notification import NotificationWorkflow, initial_search_attributes

# A request is recorded first; its workflow start then gets this long. Past it (Temporal away or
# frozen) the request still succeeds: the row is durable and the workers' sweeper starts the
# workflow once Temporal answers (notifyflow.sweeper).
START_WAIT = timedelta(seconds=5)


def timing_for(type: NotificationType, settings: Settings) -> Timing:
    """Per-type overrides in NOTIFICATION_CONFIG win over the environment's defaults."""
    cfg = NOTIFICATION_CONFIG[type]
    return Timing(
        remind_after=cfg.remind_after or settings.remind_after,
        escalate_after=cfg.escalate_after or settings.escalate_after,
        auto_close_after=cfg.auto_close_after or settings.auto_close_after,
    )


def is_admin_of(merchant_id: Any) -> ColumnElement[bool]:
    """The merchant's active admins: who may always answer. ``merchant_id``: a value, or a
    column to join on."""
    return and_(
        MerchantUser.merchant_id == merchant_id,
        MerchantUser.user_type == "admin",
        MerchantUser.deactivated_at.is_(None),
    )


async def admin_ids(session: AsyncSession, merchant_id: int) -> list[int]:
    """The ids of the merchant's active admins, in order."""
    return list(
        (
            await session.scalars(
                select(MerchantUser.id).where(is_admin_of(merchant_id)).order_by(MerchantUser.id)
            )
        ).all()
    )


def workflow_input(
    notification: Notification, admin_ids: list[int], settings: Settings
) -> NotificationWorkflowInput:
    kind = NotificationType(notification.type)
    cfg = NOTIFICATION_CONFIG[kind]
    return NotificationWorkflowInput(
        notification_id=notification.id,
        type=kind,
        merchant_id=notification.merchant_id,
        conversation_id=notification.conversation_id,
        headline=headline(notification.type, notification.context),
        answer_schema=notification.answer_schema,
        answered_fields=list(cfg.answered_fields),
        allow_multiple_answers=notification.allow_multiple_answers,
        timing=_timing(notification, kind, settings),
        admin_ids=admin_ids,
        priority=Priority(notification.priority or Priority.normal),
        service=_service(notification),
    )


def _timing(notification: Notification, kind: NotificationType, settings: Settings) -> Timing:
    """The timers recorded with the notification (the merchant's, halved when urgent), else
    the type's and the deployment's."""
    service = notification.service_level
    if not service:
        return timing_for(kind, settings)
    return Timing(
        remind_after=timedelta(seconds=service["remind_after"]),
        escalate_after=timedelta(seconds=service["escalate_after"]),
        auto_close_after=timedelta(seconds=service["auto_close_after"]),
    )


def _service(notification: Notification) -> ServiceLevel | None:
    service = notification.service_level
    if not service:
        return None
    target = service.get("first_answer_target")
    return ServiceLevel(
        timezone=service.get("timezone") or "UTC",
        business_hours=service.get("business_hours"),
        first_answer_target=timedelta(seconds=target) if target else None,
        csat_enabled=bool(service.get("csat_enabled")),
    )


def summary(notification: Notification, input: NotificationWorkflowInput) -> str:
    """The workflow's static summary in the Temporal UI."""
    public = format_notification_id(notification.id)
    shown = input.headline if len(input.headline) <= 80 else input.headline[:79] + "…"
    urgent = " · URGENT" if input.priority is Priority.urgent else ""
    return f'{public} · {notification.type}{urgent} · "{shown}"'


class StartOptions(TypedDict):
    id: str
    task_queue: str
    search_attributes: TypedSearchAttributes
    static_summary: str
    task_timeout: timedelta


def start_options(
    notification: Notification,
    input: NotificationWorkflowInput,
    settings: Settings,
    *,
    static_summary: str | None = None,
) -> StartOptions:
    """What every start of a notification's workflow names: its id (the public id), task
    queue, search attributes, summary and workflow task timeout."""
    return {
        "id": workflow_id_for(notification.id),
        "task_queue": settings.temporal_task_queue,
        "search_attributes": initial_search_attributes(input),
        "static_summary": static_summary or summary(notification, input),
        "task_timeout": policies.NOTIFICATION_TASK_TIMEOUT,
    }


async def ensure_started(
    client: Client,
    notification: Notification,
    admin_ids: list[int],
    settings: Settings,
    *,
    close: CloseRequest | None = None,
) -> bool:
    """Start the workflow, or join the one already running: safe to call again. With
    ``close``, the close signal goes with the start (signal-with-start), so a notification
    whose workflow never ran is closed without anyone being asked. False when the workflow
    already ran to its end."""
    input = workflow_input(notification, admin_ids, settings)
    options: dict[str, Any] = {}
    if close is not None:
        options = {"start_signal": "close", "start_signal_args": [close]}
    else:
        options = {
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "request_eager_start": True,
        }
    return await start_once(
        client,
        NotificationWorkflow.run,
        input,
        rpc_timeout=START_WAIT,
        **start_options(notification, input, settings),
        **options,
    )


async def start_once(client: Client, run: Any, input: Any, **options: Any) -> bool:
    """Start a workflow whose id names one piece of work (a notification, an inbound message,
    a fallback): one that already ran to its end is never started again, and False says so.
    ``options``: the start's own (id, queue, summary; USE_EXISTING joins a running one)."""
    try:
        await client.start_workflow(
            run, input, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, **options
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
