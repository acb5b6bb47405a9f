"""The worker's handler of the Nexus ``NotificationService`` (contract: nexus_service.py).

Every operation goes through the same starter functions as the HTTP API, so validation,
refusals and idempotency are the same; a refusal becomes a non-retryable operation failure
whose message starts with its refusal code, never a retry loop.
"""

from __future__ import annotations

import logging
from typing import Any

import nexusrpc
from nexusrpc.handler import StartOperationContext, service_handler, sync_operation
from temporalio import nexus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from notifyflow import launch, starter
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from notifyflow.directory import check_active_answerer
from notifyflow.intake import record_request
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import format_notification_id, workflow_id_for
from notifyflow.models.views import NotificationView
from notifyflow.models.workflow_io import AnswerSource, NotificationOutcome, Priority
from notifyflow.nexus_service import (
    NexusAnswer,
    NexusAnswerAccepted,
    NexusClose,
    NexusCustomerMessage,
    NexusCustomerMessageAccepted,
    NexusNotificationRef,
    NexusNotificationRequest,
    NexusNotificationState,
    NotificationService,
)
from notifyflow.workflows import policies
from notifyflow.workflows.notification import NotificationWorkflow, initial_search_attributes

log = logging.getLogger(__name__)


def _failed(err: NotificationError) -> nexusrpc.OperationError:
    """A refusal, as the caller's workflow sees it: final, with the HTTP API's code."""
    return nexusrpc.OperationError(
        f"{err.code.value}: {err.message}", state=nexusrpc.OperationErrorState.FAILED
    )


def _state(view: NotificationView) -> NexusNotificationState:
    return NexusNotificationState(
        notification_id=view.notification_id,
        status=view.status,
        type=view.type,
        merchant_id=view.merchant_id,
        conversation_id=view.conversation_id,
        context=view.context,
        answered_by=next((a.answered_by for a in view.answers if a.accepted), None),
        delivery_method=view.delivery.method,
        close_reason=view.close_reason,
        recipients=[r.merchant_user_id for r in view.recipients],
    )


@service_handler(service=NotificationService)
class NotificationServiceHandler:
    def __init__(self, db: SessionFactory, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    @nexus.workflow_run_operation
    async def request_notification(
        self, ctx: nexus.WorkflowRunOperationContext, input: NexusNotificationRequest
    ) -> nexus.WorkflowHandle[NotificationOutcome]:
        """Record the notification and start (or join) its workflow; the caller's workflow
        gets the outcome when it ends."""
        try:
            kind, context = starter.check_request(input.type, input.context)
            # A retried Nexus start carries the same request id: it must join, not duplicate.
            key = input.idempotency_key or f"nexus:{ctx.request_id}"
            try:
                priority = Priority(input.priority)
            except ValueError:
                raise NotificationError(
                    RefusalCode.invalid_input, "priority must be normal or urgent"
                ) from None
            notification, admin_ids, _ = await record_request(
                self._db,
                kind,
                context,
                input.conversation_id,
                key,
                priority=priority,
                settings=self._settings,
            )
        except NotificationError as err:
            raise _failed(err) from None
        workflow_input = launch.workflow_input(notification, admin_ids, self._settings)
        public = format_notification_id(notification.id)
        log.info("nexus: %s requested by a caller workflow", public)
        try:
            return await self._start(ctx, notification, workflow_input)
        except WorkflowAlreadyStartedError:
            raise _failed(
                NotificationError(
                    RefusalCode.closed,
                    f"{public} has already ended; its outcome is in get_notification",
                )
            ) from None

    async def _start(
        self,
        ctx: nexus.WorkflowRunOperationContext,
        notification: Any,
        workflow_input: Any,
    ) -> nexus.WorkflowHandle[NotificationOutcome]:
        return await ctx.start_workflow(
            NotificationWorkflow.run,
            workflow_input,
            id=workflow_id_for(notification.id),
            task_queue=self._settings.temporal_task_queue,
            # Already running (an HTTP request with the same key, or the sweeper): the caller
            # is attached to that run; one that already ended is refused.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(workflow_input),
            static_summary=launch.summary(notification, workflow_input) + " · via Nexus",
            task_timeout=policies.NOTIFICATION_TASK_TIMEOUT,
        )

    @sync_operation
    async def answer_notification(
        self, ctx: StartOperationContext, input: NexusAnswer
    ) -> NexusAnswerAccepted:
        try:
            # A departed user may not answer, as on every other path (DESIGN §9's rule).
            await check_active_answerer(self._db, input.answered_by)
            accepted = await starter.answer_notification(
                nexus.client(),
                self._db,
                input.notification_id,
                answered_by=input.answered_by,
                answer=input.answer_json,
                source=AnswerSource.tool,
                settings=self._settings,
            )
        except NotificationError as err:
            raise _failed(err) from None
        return NexusAnswerAccepted(
            notification_id=accepted.notification_id, status=accepted.status.value
        )

    @sync_operation
    async def close_notification(
        self, ctx: StartOperationContext, input: NexusClose
    ) -> NexusNotificationState:
        try:
            view = await starter.close_notification(
                nexus.client(),
                self._db,
                input.notification_id,
                reason=input.reason,
                closed_by="nexus",
                settings=self._settings,
            )
        except NotificationError as err:
            raise _failed(err) from None
        return _state(view)

    @sync_operation
    async def get_notification(
        self, ctx: StartOperationContext, input: NexusNotificationRef
    ) -> NexusNotificationState:
        try:
            return _state(await starter.get_notification(self._db, input.notification_id))
        except NotificationError as err:
            raise _failed(err) from None

    @sync_operation
    async def add_customer_message(
        self, ctx: StartOperationContext, input: NexusCustomerMessage
    ) -> NexusCustomerMessageAccepted:
        """A follow-up from the customer, forwarded to the recipients (withdrawal is
        ``close_notification`` with reason ``withdrawn``)."""
        try:
            accepted = await starter.add_customer_message(
                nexus.client(), self._db, input.notification_id, input.text, settings=self._settings
            )
        except NotificationError as err:
            raise _failed(err) from None
        return NexusCustomerMessageAccepted(
            notification_id=accepted.notification_id, seq=accepted.seq
        )
