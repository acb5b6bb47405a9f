"""Timeouts and retry policies of every activity call, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database plus sends to a handful of admins: seconds normally. The bound is generous, above the
# worst case of one attempt (two AI calls at 30 s, provider calls at 15 s each), so a slow
# attempt is never run twice at once; a dead worker is noticed by the heartbeat timeout.
OPEN_TIMEOUT = timedelta(minutes=5)
# The open's first attempt runs inside a workflow task (a local activity), which the SDK keeps
# alive by heartbeating it every 4 s (each heartbeat three more events and, on Temporal Cloud,
# an Action). Past 30 s it is a slow day: the attempt is cancelled and the activity, with its
# own heartbeats and the bound above, takes over (the routing an attempt wrote is reused).
LOCAL_OPEN_TIMEOUT = timedelta(seconds=30)
DELIVER_TIMEOUT = timedelta(minutes=5)
FOLLOW_UP_TIMEOUT = timedelta(minutes=5)
FINISH_TIMEOUT = timedelta(minutes=5)
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# A non-admin's answer that arrives before routing is done waits this long inside the update,
# then is refused as "not ready" (the API answers 503 with Retry-After): the answer route must
# return within 10 s (DESIGN §7) even while the fan-out is being retried.
ANSWER_WAIT_FOR_ROUTING = timedelta(seconds=4)
RECORD_TIMEOUT = timedelta(seconds=30)
# A notification's workflow task timeout, set at its start (the SDK's default is 10 s). The
# open's first attempt runs inside the first workflow task, which the SDK heartbeats at 80 % of
# this: an update that arrives meanwhile (a non-admin's answer) waits at most 4 s for it, so
# with ANSWER_WAIT_FOR_ROUTING the answer route still returns within 10 s; and a worker that
# dies mid-open is replaced after 5 s.
NOTIFICATION_TASK_TIMEOUT = timedelta(seconds=5)

# Keep trying for a day: an outage of the database, the AI or the channel must delay a
# notification, never lose it. Past that the notification is closed as delivery_failed.
GIVE_UP_AFTER = timedelta(hours=24)

# The status callback's fallbacks (FallbackDeliveryWorkflow): one template or one notice.
FALLBACK_TIMEOUT = timedelta(minutes=2)

# An admin's WhatsApp reply (AdminReplyWorkflow): understand and submit it, then reply.
ADMIN_REPLY_ANSWER_TIMEOUT = timedelta(minutes=2)
ADMIN_REPLY_TIMEOUT = timedelta(minutes=1)
# The admin is waiting for the reply: past an hour of outage it is news no longer worth
# sending, and the notification's own reminders take over.
ADMIN_REPLY_GIVE_UP_AFTER = timedelta(hours=1)

# The failure type no retry mends (activities.common.non_retryable).
NON_RETRYABLE = "NonRetryable"

SIDE_EFFECT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=[NON_RETRYABLE],
)

# The final bookkeeping must happen whatever it takes: no attempt limit, no schedule limit.
FINISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)

# The open's first attempt, local to the workflow task (NotificationWorkflow._open): one try,
# then the server-side activity with SIDE_EFFECT_RETRY, so retries through an outage add no
# timer and workflow task per attempt to the history.
LOCAL_OPEN_RETRY = RetryPolicy(
    maximum_attempts=1,
    non_retryable_error_types=[NON_RETRYABLE],
)

LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)


# workflow.patched markers: histories recorded before each change replay the old branch.
PATCH_CLOSE_BEFORE_OPEN = "close-before-open"
PATCH_BOUNDED_ANSWER_WAIT = "bounded-answer-wait"
PATCH_DELIVER_AFTER_OPEN_FAILURE = "deliver-after-open-failure"
PATCH_SAME_ANSWER_SIGNAL = "same-answer-signal"
# After delivery, with the merchant's csat_enabled: the ask_satisfaction activity.
PATCH_CSAT_ASK = "csat-ask"
# The open's first attempt as a local activity (NotificationWorkflow._open).
PATCH_LOCAL_OPEN = "local-open"
# A close before the open ends cancels the open (NotificationWorkflow._open_unless_closed).
PATCH_CLOSE_DURING_OPEN = "close-during-open"

# The customer satisfaction ask: one send; a rating asked for hours after the answer is noise,
# so it is given up after an hour of outage rather than a day.
CSAT_ASK_TIMEOUT = timedelta(minutes=2)
CSAT_ASK_GIVE_UP_AFTER = timedelta(hours=1)

# Outbound webhooks (DESIGN §8): the first retry within 10 s, then doubling, capped at 10 min,
# for 24 h; one attempt is a single HTTP POST with a 10 s timeout.
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(seconds=30)
WEBHOOK_GIVE_UP_AFTER = timedelta(hours=24)
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["WebhookRefused"],
)
