"""What every activity shares: a log context with the notification id, heartbeats, the AI
fallback rule, and the failure that Temporal must not retry."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifyflow.ai.base import AIConfigError, AIError
from notifyflow.logs import log_context
from notifyflow.models.ids import format_notification_id

log = logging.getLogger(__name__)

# Well under the workflow's heartbeat timeout (policies.HEARTBEAT_TIMEOUT).
HEARTBEAT_EVERY = 5.0
# After this many failed attempts of an AI step, fall back to the admin's own words.
AI_ATTEMPTS_BEFORE_FALLBACK = 3


class _AboutANotification(Protocol):
    @property
    def notification_id(self) -> int: ...


S = TypeVar("S")
I = TypeVar("I", bound=_AboutANotification)  # noqa: E741
R = TypeVar("R")


def fall_back(err: AIError) -> bool:
    """Take the documented fallback now (a configuration error, or retries used up), rather
    than let Temporal retry the AI step again."""
    return isinstance(err, AIConfigError) or activity.info().attempt >= AI_ATTEMPTS_BEFORE_FALLBACK


def with_log_context(
    fn: Callable[[S, I], Awaitable[R]],
) -> Callable[[S, I], Awaitable[R]]:
    """Every log line inside an activity carries its notification id (the workflow id comes
    with ``activity.logger``'s own fields); phone numbers are masked by the log handler."""

    @functools.wraps(fn)
    async def wrapper(self: S, input: I) -> R:
        with log_context(notification_id=format_notification_id(input.notification_id)):
            with heartbeating():
                return await fn(self, input)

    return wrapper


@contextlib.contextmanager
def heartbeating(every: float = HEARTBEAT_EVERY) -> Iterator[None]:
    """Heartbeat while the body runs, so a worker that dies mid-activity is noticed within the
    heartbeat timeout rather than the whole start-to-close timeout.

    A timer on the event loop, not a task: starting and ending it costs no trip through the
    loop's queue (a task cancelled at the end had to be awaited, one more wait behind every
    other notification's work under load before the activity could report its result)."""
    if activity.info().is_local:
        # A local activity has no heartbeat (the open's first attempt): the workflow task it
        # runs in times out instead when the worker dies.
        yield
        return
    loop = asyncio.get_running_loop()
    # The beat runs in the activity's context: activity.heartbeat() finds its activity there.
    context = contextvars.copy_context()
    timer: asyncio.TimerHandle | None = None

    def beat() -> None:
        nonlocal timer
        # The next beat first: a heartbeat that raised must not end heartbeating unnoticed
        # (the attempt would then time out while it still runs, and its retry overlap it).
        timer = loop.call_later(every, beat, context=context)
        try:
            activity.heartbeat()
        except Exception:
            log.exception("heartbeat failed; trying again in %.1f s", every)

    # The heartbeat timeout runs from the activity's start, so the first beat is due only
    # after ``every``: most activities end within milliseconds and never send one.
    timer = loop.call_later(every, beat, context=context)
    try:
        yield
    finally:
        timer.cancel()  # the newest timer: a beat that ran has set the next one


def non_retryable(message: str) -> ApplicationError:
    """A failure no retry can mend (the notification does not exist, or is no longer open)."""
    return ApplicationError(message, type="NonRetryable", non_retryable=True)
