"""WebhookDeliveryWorkflow: one outbound webhook event, delivered at least once.

One workflow per event (id ``webhook-evt-<n>``): a start and one activity attempt when the
receiver answers 2xx at once (2 billable actions), one more action per retry. Retries back off
from 5 s, doubling up to 10 minutes, for 24 h (DESIGN §8); every attempt carries the same
``webhook-id``. Past that, the failure is recorded on the subscription.
"""

# No `from __future__ import annotations` here: the sandbox executes this module for every
# workflow run, and the SDK then resolves each handler's string annotations anew (a
# compile() per annotation); evaluated annotations cost nothing at that point.

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # The full name, so the sandbox passes it through (a `from <package> import <module>`
    # would import the module afresh inside the sandbox for every workflow run).
    import notifyflow.workflows.policies as policies
    from notifyflow.activities.webhooks import WebhookActivities
    from notifyflow.models.webhooks import WebhookDeliveryInput, WebhookDeliveryResult


@workflow.defn(name="WebhookDeliveryWorkflow")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, input: WebhookDeliveryInput) -> WebhookDeliveryResult:
        try:
            return await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                input,
                start_to_close_timeout=policies.WEBHOOK_ATTEMPT_TIMEOUT,
                schedule_to_close_timeout=policies.WEBHOOK_GIVE_UP_AFTER,
                retry_policy=policies.WEBHOOK_RETRY,
                summary=f"webhook event {input.event_id}",
            )
        except ActivityError as err:
            reason = str(err.cause or err)
            await workflow.execute_activity_method(
                WebhookActivities.webhook_gave_up,
                WebhookDeliveryResult(event_id=input.event_id, delivered=False, reason=reason),
                start_to_close_timeout=policies.RECORD_TIMEOUT,
                retry_policy=policies.FINISH_RETRY,
                summary=f"webhook event {input.event_id}: gave up",
            )
            return WebhookDeliveryResult(event_id=input.event_id, delivered=False, reason=reason)
