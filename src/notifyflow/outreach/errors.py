"""How a send failure leaves an activity: retried later, or a configuration error that ends
the notification at once."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from notifyflow.channels.base import SendError

CONFIGURATION_ERROR = "ConfigurationError"
# The longest a provider's Retry-After may push the next attempt back.
MAX_RETRY_AFTER = 300.0


class ConfigurationError(ApplicationError):
    """The deployment cannot send this at all (no template for a campaign, credentials or a
    Content SID refused): retrying for a day would change nothing, so the activity fails at once
    and the workflow ends the notification with this reason for an operator to read."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"configuration error: {message}", type=CONFIGURATION_ERROR, non_retryable=True
        )


def retry_later(err: SendError) -> Exception:
    """A retryable send failure for Temporal to retry; a provider's Retry-After (429) sets the
    delay of the next attempt instead of the policy's backoff."""
    retry_after = err.extra.get("retry_after")
    try:
        delay = float(retry_after) if retry_after else None
    except ValueError:
        delay = None
    if delay is None or delay <= 0:
        return err
    return ApplicationError(
        str(err),
        type="RateLimited",
        next_retry_delay=timedelta(seconds=min(delay, MAX_RETRY_AFTER)),
    )
