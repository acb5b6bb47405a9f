"""A minimal Voyager: a workflow in its own namespace that asks notifyflow through Nexus and
waits durably for the outcome. A module of its own: the workflow sandbox re-imports it."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from notifyflow.nexus_service import (
        NexusNotificationRef,
        NexusNotificationRequest,
        NexusNotificationState,
        NotificationOutcome,
        NotificationService,
    )


@workflow.defn
class VoyagerAsksWorkflow:
    @workflow.run
    async def run(self, endpoint: str, request: NexusNotificationRequest) -> NotificationOutcome:
        notifyflow = workflow.create_nexus_client(service=NotificationService, endpoint=endpoint)
        return await notifyflow.execute_operation(NotificationService.request_notification, request)


@workflow.defn
class VoyagerLooksUpWorkflow:
    @workflow.run
    async def run(self, endpoint: str, notification_id: str) -> NexusNotificationState:
        notifyflow = workflow.create_nexus_client(service=NotificationService, endpoint=endpoint)
        return await notifyflow.execute_operation(
            NotificationService.get_notification,
            NexusNotificationRef(notification_id=notification_id),
        )
