"""The Temporal dev server (file persistence) is stopped with SIGTERM mid-flight and started
again on the same database file and port; the workers and the client reconnect on their own.

- A reminder timer that came due during the outage fires after it.
- An answer being delivered when the server goes away is delivered once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from notifyflow.db.tables import Delivery
from notifyflow.models.ids import parse_notification_id
from tests.faults.harness import Stack, ledger_row, scenario, until

ANSWER = "We open at 10 on Sundays."
QUESTION = "Do you ship to the Canary Islands?"  # Stack.request's default
REMIND_AFTER = timedelta(seconds=5)


async def test_timer_due_during_the_outage_fires_after_it(make_stack) -> None:
    stack: Stack = await make_stack(remind_after=REMIND_AFTER)
    merchant = await stack.merchant()
    async with scenario("temporal server restarted, reminder due during the outage") as case:
        public = await stack.request(merchant)
        await stack.wait_waiting(public)
        started = (await stack.client.get_workflow_handle(public).describe()).start_time
        assert started is not None
        due = started + REMIND_AFTER
        stack.server.stop()
        stopped_at = datetime.now(UTC)
        # Down until well past the reminder, and longer than the reminder delay itself. (That
        # the reminder had not gone out before the stop is proven below: every reminder row
        # was written after the restart.)
        while datetime.now(UTC) < max(due, stopped_at + REMIND_AFTER) + timedelta(seconds=1):
            await asyncio.sleep(0.1)
        restarted_at = datetime.now(UTC)
        stack.server.start()

        async def reminded() -> bool:
            try:
                return (await stack.status(public)).reminders_sent == 1
            except Exception:  # noqa: BLE001 - the client and worker are reconnecting
                return False

        await until(reminded, f"{public} reminded after the restart", timeout=60, every=0.3)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        assert (await stack.outcome(public)).status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        # Each admin got the reminder, once (the verdict counts duplicates), after the restart.
        for admin_id in merchant.admin_ids:
            (reminder,) = [
                m
                for m in stack.twilio.accepted(to=merchant.phones[admin_id])
                if stack.twilio.campaign_of(m["content_sid"]) == "notification_reminder"
            ]
            assert reminder["variables"] == {"1": public, "2": QUESTION}
        async with stack.db() as session:
            reminders = (
                await session.scalars(
                    select(Delivery).where(
                        Delivery.notification_id == parse_notification_id(public),
                        Delivery.kind == "reminder",
                    )
                )
            ).all()
        assert sorted(r.merchant_user_id for r in reminders) == sorted(merchant.admin_ids)
        for row in reminders:
            assert row.status == "sent"
            assert row.created_at >= restarted_at
        # The worker outlived the outage (no restart needed).
        assert stack.worker.running


async def test_answer_in_flight_when_the_server_restarts_is_delivered_once(make_stack) -> None:
    # A worker of its own with 5 s activity timeouts, in case the completion is lost with the
    # server and the activity has to run again.
    stack: Stack = await make_stack(activity_timeout=5.0)
    merchant = await stack.merchant()
    customer = merchant.customer_phone or ""
    async with scenario("temporal server restarted during deliver_answer") as case:
        public = await stack.request(merchant)
        await stack.wait_waiting(public)
        hold = stack.twilio.hold_next(customer, 1.0)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        await until(hold.arrived.is_set, "the answer to reach Twilio", timeout=30)
        starts = stack.server.starts
        stack.server.restart()
        assert stack.server.starts == starts + 1
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        (message,) = stack.twilio.accepted(to=customer)
        row = await ledger_row(stack, public, "answer", customer)
        assert (row.status, row.provider_message_id) == ("sent", message["sid"])
        assert stack.worker.running
