"""When the open's local first attempt fails, which failures the server-side activity tries
again (and after how long), and which end the notification at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from notifyflow.outreach.errors import ConfigurationError
from notifyflow.workflows.notification import _open_failure, _retry_after, _retryable


def _wrapped(cause: BaseException, state: RetryState | None) -> ActivityError:
    err = ActivityError(
        "Local Activity failed",
        scheduled_event_id=0,
        started_event_id=0,
        identity="",
        activity_type="open_notification",
        activity_id="1",
        retry_state=state,
    )
    err.__cause__ = cause
    return err


def test_a_provider_outage_hands_over() -> None:
    # A local activity's failure arrives as the ApplicationError its attempt raised.
    assert _retryable(ApplicationError("20500: Internal error", type="SendError"))


def test_a_local_attempt_that_ran_out_of_time_hands_over() -> None:
    timeout = TimeoutError("timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])
    assert _retryable(_wrapped(timeout, RetryState.TIMEOUT))


@pytest.mark.parametrize(
    "failure",
    [
        ConfigurationError("the channel refused a send: 20003"),
        ApplicationError("notification 7 does not exist", type="NonRetryable"),
        ApplicationError("a bug", type="Bug", non_retryable=True),
        _wrapped(ApplicationError("x"), RetryState.NON_RETRYABLE_FAILURE),
    ],
)
def test_a_failure_no_retry_mends_ends_it(failure: ActivityError | ApplicationError) -> None:
    assert not _retryable(failure)


def test_a_rate_limit_waits_its_retry_after_before_the_handover() -> None:
    limited = ApplicationError("429", type="RateLimited", next_retry_delay=timedelta(seconds=30))
    assert _retryable(limited)
    assert _retry_after(limited) == timedelta(seconds=30)
    assert _retry_after(ApplicationError("500")) is None


def test_the_configuration_error_is_the_reason_as_written() -> None:
    err = ConfigurationError("the channel refused a send: 20003")
    assert _open_failure(err) == "configuration error: the channel refused a send: 20003"
    assert _open_failure(_wrapped(err, RetryState.NON_RETRYABLE_FAILURE)) == err.message
    assert "could not be notified" in _open_failure(ApplicationError("boom"))
