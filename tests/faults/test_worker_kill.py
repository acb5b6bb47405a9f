"""The worker is SIGKILLed in the middle of each lifecycle activity, then started again.

The kill lands while the activity is mid-send: the fake Twilio holds one send and the test kills
the worker as soon as that send arrives. Three ways the held send can end, rotated over trials:

- ``before_acceptance``: the provider never takes the message (the retry must send it);
- ``accepted_answer_lost``: the provider took it, the answer never reached the worker;
- ``accepted_after_death``: the provider takes it a moment after the worker died.

In the last two the ledger row is still ``pending`` when the activity is retried, so the retry
must ask the provider (``find_accepted``) and not send again.

The loop (``test_worker_killed_mid_activity``) runs the worker with a 5 s ``start_to_close``
and a 1 s sticky timeout (``FAULT_ACTIVITY_TIMEOUT``, see worker_proc.py) so that a trial takes
seconds. That is not how production notices a dead worker: its activities heartbeat every 5 s
with a 30 s heartbeat timeout, under a 5 min ``start_to_close`` (workflows/policies.py), and the
SDK's sticky timeout is 10 s. ``test_worker_killed_with_production_timeouts`` runs the same
kill with the production policies untouched (no override at all), so it is the heartbeat
timeout that brings the activity back (the open's first attempt is a local activity: there
the workflow task timeout, 5 s, brings it back, and the loop checks that); it takes about a
minute a trial and is marked ``slow`` (``make test-full``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from temporalio.api.enums.v1 import EventType, TimeoutType

from tests.faults.harness import (
    Stack,
    customer_words,
    fault_trials,
    ledger_row,
    scenario,
    until,
)
from tests.fixtures.histories import activities_run

T = TypeVar("T")
ACTIVITY_TIMEOUT = 5.0
VARIANTS = ("before_acceptance", "accepted_answer_lost", "accepted_after_death")
ACTIVITIES = ("open_notification", "follow_up", "deliver_answer", "finish_notification")
ANSWER = "Yes, we ship there; it takes about 5 days."
REMIND_AFTER = timedelta(seconds=4)
# The ledger kind of the send each kill interrupts, and whose phone it goes to.
KIND = {
    "open_notification": "request",
    "follow_up": "reminder",
    "deliver_answer": "answer",
    "finish_notification": "expiry",
}
KILLED_AT_CUSTOMER = ("deliver_answer", "finish_notification")


def _cases() -> list[tuple[str, int, str]]:
    return [
        (activity, trial, VARIANTS[(a + trial) % len(VARIANTS)])
        for a, activity in enumerate(ACTIVITIES)
        for trial in range(fault_trials())
    ]


def _arm(stack: Stack, phone: str, variant: str) -> None:
    """The next send to ``phone`` hangs until long after the worker is dead."""
    if variant == "before_acceptance":
        stack.twilio.timeout_next(8.0, to=phone)
    elif variant == "accepted_answer_lost":
        stack.twilio.accept_then_fail_next("timeout", to=phone, delay=8.0)
    else:
        stack.twilio.hold_next(phone, 1.0)


async def _nothing() -> None:
    return None


async def _kill_during(
    stack: Stack, phone: str, variant: str, action: Callable[[], Awaitable[T]]
) -> T:
    """Arm the next send to ``phone``, run ``action``, SIGKILL the worker as soon as that
    send reaches the fake, start a new worker."""
    before = stack.twilio.arrivals(phone)
    _arm(stack, phone, variant)
    result = await action()
    await stack.wait_arrival(phone, before)
    stack.worker.kill()
    stack.worker.start()
    return result


@pytest.mark.parametrize(("activity", "trial", "variant"), _cases())
async def test_worker_killed_mid_activity(
    make_stack, activity: str, trial: int, variant: str
) -> None:
    await _killed_mid_activity(make_stack, activity, variant, ACTIVITY_TIMEOUT)


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_worker_killed_with_production_timeouts(make_stack, variant: str) -> None:
    """The customer's answer is mid-send when the worker dies; production's own detection
    (heartbeat timeout) brings the activity back on a new worker."""
    await _killed_mid_activity(make_stack, "deliver_answer", variant, None)


async def _killed_mid_activity(
    make_stack, activity: str, variant: str, activity_timeout: float | None
) -> None:
    timers = {}
    if activity == "follow_up":
        timers = {"remind_after": REMIND_AFTER}
    elif activity == "finish_notification":
        timers = {
            "remind_after": timedelta(seconds=1),
            "escalate_after": timedelta(seconds=2),
            "auto_close_after": timedelta(seconds=4),
        }
    if activity_timeout is None:
        stack: Stack = await make_stack(own_worker=True, **timers)
        name = f"worker SIGKILL in {activity}, production timeouts"
    else:
        stack = await make_stack(activity_timeout=activity_timeout, **timers)
        name = f"worker SIGKILL in {activity}"
    merchant = await stack.merchant()
    admin = merchant.phones[merchant.admin_ids[0]]
    customer = merchant.customer_phone or ""
    async with scenario(name) as case:
        expected = "delivered"
        if activity == "open_notification":
            public = await _kill_during(stack, admin, variant, lambda: stack.request(merchant))
            await stack.wait_waiting(public)
            await stack.answer(public, merchant.admin_ids[1], ANSWER)
        elif activity == "follow_up":
            public = await stack.request(merchant)
            await stack.wait_waiting(public)
            assert (await stack.status(public)).reminders_sent == 0, "reminded too early"
            await _kill_during(stack, admin, variant, _nothing)
            await _until_reminded(stack, public)
            await stack.answer(public, merchant.admin_ids[1], ANSWER)
        elif activity == "deliver_answer":
            public = await stack.request(merchant)
            await stack.wait_waiting(public)
            await _kill_during(
                stack,
                customer,
                variant,
                lambda: stack.answer(public, merchant.admin_ids[0], ANSWER),
            )
        else:
            # The customer hears nothing before the expiry notice: arm at once.
            public = await _kill_during(stack, customer, variant, lambda: stack.request(merchant))
            expected = "expired"
        outcome = await stack.outcome(public, timeout=240 if activity_timeout is None else 90)
        assert outcome.status.value == expected
        await case.judge(stack, {public: expected}, [merchant])
        customer_messages = stack.twilio.accepted(to=merchant.customer_phone)
        assert len(customer_messages) == 1
        if expected == "delivered":
            assert customer_messages[0]["body"] == f"(localized) {customer_words(ANSWER)}"
        # The kill landed mid-send, and the retry went through the ledger.
        phone = customer if activity in KILLED_AT_CUSTOMER else admin
        row = await ledger_row(stack, public, KIND[activity], phone)
        assert row.status == "sent"
        assert row.provider_message_id in {m["sid"] for m in stack.twilio.accepted(to=phone)}
        if variant == "before_acceptance":
            assert row.attempts == 2
        else:
            # Taken by the provider before or as the worker died: found, not sent again.
            assert row.attempts == 1
            assert stack.twilio.listed(phone) >= 1
        assert stack.worker.kills == 1
        if activity == "open_notification":
            # The fan-out's first attempt is local: the dead worker's workflow task timed out
            # and the new worker ran the fan-out again in its own, still locally.
            history = await stack.client.get_workflow_handle(public).fetch_history()
            kinds = [e.event_type for e in history.events]
            assert EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT in kinds
            started = history.events[0].workflow_execution_started_event_attributes
            assert started.workflow_task_timeout.ToTimedelta() == timedelta(seconds=5)
            assert [(name, local) for name, local, _ in activities_run(history)] == [
                ("open_notification", True),
                ("deliver_answer", False),
            ]
        if activity_timeout is None:
            # Production's own detection brought it back: the attempt that finished started
            # after a heartbeat timeout (not a start-to-close one, nothing shortened).
            assert await _retried_after(stack, public, activity) == (
                TimeoutType.TIMEOUT_TYPE_HEARTBEAT
            )


async def _retried_after(stack: Stack, public: str, activity: str) -> int:
    """The timeout type that failed the attempt before the one that completed ``activity``."""
    history = await stack.client.get_workflow_handle(public).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity
    }
    (started,) = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    assert started.attempt >= 2, f"{activity} completed on attempt {started.attempt}"
    timeout: int = started.last_failure.timeout_failure_info.timeout_type
    return timeout


async def _until_reminded(stack: Stack, public: str) -> None:
    async def reminded() -> bool:
        return (await stack.status(public)).reminders_sent == 1

    await until(reminded, f"{public} reminded", timeout=60, every=0.2)
