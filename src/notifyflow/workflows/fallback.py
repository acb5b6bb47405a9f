"""FallbackDeliveryWorkflow: what a failed status callback of a customer answer sets going.

Started by the status webhook with id ``NOTIF_<n>:fallback`` (63016: send the template
instead) or ``NOTIF_<n>:delivery-failed`` (a permanent failure) and conflict policy
USE_EXISTING, so a callback Twilio delivers twice, or two replicas of the API receiving it at
once, start one run. The one activity is idempotent through the delivery ledger.
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
    from notifyflow.activities.fallback import FallbackActivities
    from notifyflow.models.ids import format_notification_id
    from notifyflow.models.inbound import FallbackAction, FallbackInput, FallbackResult


def fallback_workflow_id(notification_id: int, action: FallbackAction) -> str:
    suffix = "fallback" if action is FallbackAction.template else "delivery-failed"
    return f"{format_notification_id(notification_id)}:{suffix}"


@workflow.defn(name="FallbackDeliveryWorkflow")
class FallbackDeliveryWorkflow:
    @workflow.run
    async def run(self, input: FallbackInput) -> FallbackResult:
        public = format_notification_id(input.notification_id)
        if input.action is FallbackAction.template:
            try:
                return await workflow.execute_activity_method(
                    FallbackActivities.send_answer_template,
                    input,
                    start_to_close_timeout=policies.FALLBACK_TIMEOUT,
                    schedule_to_close_timeout=policies.GIVE_UP_AFTER,
                    retry_policy=policies.SIDE_EFFECT_RETRY,
                    summary=f"{public}: send the answer as a template (63016)",
                )
            except ActivityError as err:
                # A day of failed attempts: end the notification in a terminal state with
                # the reason rather than leave it "delivered".
                input = input.model_copy(
                    update={"reason": f"the template fallback gave up: {err.cause or err}"}
                )
        return await workflow.execute_activity_method(
            FallbackActivities.record_delivery_failure,
            input,
            start_to_close_timeout=policies.FALLBACK_TIMEOUT,
            retry_policy=policies.FINISH_RETRY,
            summary=f"{public}: delivery failed ({input.error_code})",
        )
