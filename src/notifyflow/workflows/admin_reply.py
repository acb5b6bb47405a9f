"""AdminReplyWorkflow: one merchant user's WhatsApp message, understood, submitted, replied to.

Started by the inbound webhook with id ``whatsapp:<MessageSid>`` before the webhook records
the message, so a crash between the two is repaired by Twilio's retry (the start is then a
no-op), and a message delivered twice is handled once. The webhook answers Twilio at once; the
AI call, the answer and the reply happen here, retried by Temporal.
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
    from notifyflow.activities.admin_reply import AdminReplyActivities
    from notifyflow.models.inbound import (
        AdminReplyDecision,
        AdminReplyInput,
        AdminReplyMessage,
        ReplyOutcome,
    )

SORRY = (
    "Sorry — your message could not be processed just now. Please send your answer again in a "
    "few minutes."
)


def admin_reply_workflow_id(message_sid: str) -> str:
    return f"whatsapp:{message_sid}"


@workflow.defn(name="AdminReplyWorkflow")
class AdminReplyWorkflow:
    @workflow.run
    async def run(self, input: AdminReplyInput) -> AdminReplyDecision:
        try:
            decision: AdminReplyDecision = await workflow.execute_activity_method(
                AdminReplyActivities.answer_admin_reply,
                input,
                start_to_close_timeout=policies.ADMIN_REPLY_ANSWER_TIMEOUT,
                schedule_to_close_timeout=policies.ADMIN_REPLY_GIVE_UP_AFTER,
                retry_policy=policies.SIDE_EFFECT_RETRY,
                summary=f"understand and submit WhatsApp message {input.message_sid}",
            )
        except ActivityError as err:
            workflow.logger.warning("admin reply %s gave up: %s", input.message_sid, err.cause)
            decision = AdminReplyDecision(outcome=ReplyOutcome.failed, reply=SORRY)
        if decision.reply:
            workflow.set_current_details(f"{decision.outcome.value}: {decision.reply}")
            try:
                await workflow.execute_activity_method(
                    AdminReplyActivities.reply_to_admin,
                    AdminReplyMessage(
                        message_sid=input.message_sid,
                        merchant_id=input.merchant_id,
                        merchant_user_id=input.merchant_user_id,
                        conversation_id=input.conversation_id,
                        notification_id=decision.notification_id,
                        text=decision.reply,
                    ),
                    start_to_close_timeout=policies.ADMIN_REPLY_TIMEOUT,
                    schedule_to_close_timeout=policies.ADMIN_REPLY_GIVE_UP_AFTER,
                    retry_policy=policies.SIDE_EFFECT_RETRY,
                    summary=f"reply to {input.message_sid}: {decision.outcome.value}",
                )
            except ActivityError as err:
                # The answer stands either way; only the courtesy reply is lost.
                workflow.logger.warning("reply to %s gave up: %s", input.message_sid, err.cause)
        return decision
