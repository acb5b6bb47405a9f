"""CorrectionWorkflow: sends one correction of a delivered answer to the customer.

The notification's own workflow has ended at delivery, so each correction is its own small
workflow, id ``NOTIF_<n>:correction-<version>`` (started with duplicates rejected): a client
retrying the request, or the sweeper starting a version whose start failed, joins or finds the
first run. Its one activity sends through the delivery ledger under a key per notification and
version, so a retried attempt or a worker's death mid-send never messages the customer twice.
Happy path: start, one activity, done (see the README's figures).
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
    from notifyflow.activities.corrections import CorrectionActivities
    from notifyflow.models.corrections import (
        CorrectionFailure,
        CorrectionInput,
        CorrectionResult,
    )
    from notifyflow.models.ids import format_notification_id


@workflow.defn(name="CorrectionWorkflow")
class CorrectionWorkflow:
    @workflow.run
    async def run(self, input: CorrectionInput) -> CorrectionResult:
        public = format_notification_id(input.notification_id)
        workflow.set_current_details(
            f"**{public}** · correction v{input.version} · sending to the customer"
        )
        try:
            result: CorrectionResult = await workflow.execute_activity_method(
                CorrectionActivities.deliver_correction,
                input,
                start_to_close_timeout=policies.DELIVER_TIMEOUT,
                heartbeat_timeout=policies.HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=policies.GIVE_UP_AFTER,
                retry_policy=policies.SIDE_EFFECT_RETRY,
                summary=f"{public}: localize and send correction v{input.version}",
            )
        except ActivityError as err:
            # A day of failures, or one no retry can mend: the version records why.
            result = await workflow.execute_activity_method(
                CorrectionActivities.record_correction_failure,
                CorrectionFailure(
                    notification_id=input.notification_id,
                    version=input.version,
                    reason=f"the correction gave up: {err.cause or err}",
                ),
                start_to_close_timeout=policies.FINISH_TIMEOUT,
                retry_policy=policies.FINISH_RETRY,
                summary=f"{public}: correction v{input.version} failed",
            )
        workflow.set_current_details(
            f"**{public}** · correction v{input.version} · {result.status.value}"
            + (f" by {result.method}" if result.method else "")
            + (f": {result.reason}" if result.reason else "")
        )
        return result
