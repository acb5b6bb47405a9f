"""Timeouts and retry policies of every activity call, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database plus sends to a handful of admins: seconds normally; the timeout bounds a hung call.
OPEN_TIMEOUT = timedelta(minutes=2)
DELIVER_TIMEOUT = timedelta(minutes=2)
FOLLOW_UP_TIMEOUT = timedelta(minutes=2)
FINISH_TIMEOUT = timedelta(minutes=2)
RECORD_TIMEOUT = timedelta(seconds=30)

# Keep trying for a day: an outage of the database, the AI or the channel must delay a
# notification, never lose it. Past that the notification is closed as delivery_failed.
GIVE_UP_AFTER = timedelta(hours=24)

SIDE_EFFECT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=["NonRetryable"],
)

# The final bookkeeping must happen whatever it takes: no attempt limit, no schedule limit.
FINISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)

LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=20,
)
