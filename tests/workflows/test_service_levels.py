"""Service levels (DESIGN §10) on the time-skipping server and the dev server: a Friday-evening
question reminds, escalates and expires on Monday's business clock; urgent asks the on-call
user at once with halved timers; a breached target escalates; a settings change retimes a
waiting notification; the SLA figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from temporalio.api.enums.v1 import EventType

from notifyflow import service_levels, starter
from notifyflow.db.tables import Merchant, Notification
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.workflow_io import NotificationOutcome, WorkflowStatus
from notifyflow.read_model import sla_view
from notifyflow.search_attributes import NOTIFICATION_PRIORITY
from notifyflow.service_levels import MerchantSettingsBody
from tests.api.conftest import client_for, make_settings
from tests.fixtures.lifecycle import running_worker, settings_for
from tests.workflows.helpers import until

NY = ZoneInfo("America/New_York")
WEEKDAYS = {d: ["09:00-18:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}


async def _hours(db, merchant_id: int, timezone: str, **body: object) -> None:  # type: ignore[no-untyped-def]
    async with db() as session:
        await session.execute(
            update(Merchant).where(Merchant.id == merchant_id).values(timezone=timezone)
        )
        await session.commit()
    await service_levels.write(
        db,
        merchant_id,
        MerchantSettingsBody(**body),
        settings_for("unused"),  # type: ignore[arg-type]
    )


def _next_friday_evening(now: datetime) -> datetime:
    local = now.astimezone(NY)
    days = (4 - local.weekday()) % 7 or 7
    friday = (local + timedelta(days=days)).replace(hour=18, minute=30, second=0, microsecond=0)
    return friday.astimezone(UTC)


async def test_a_friday_evening_question_runs_on_mondays_business_clock(
    skip_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory(admins=1, others=(), on_call=("oncall",))
    await _hours(
        db,
        shop.merchant_id,
        "America/New_York",
        business_hours=WEEKDAYS,
        remind_after=1800,
        escalate_after=7200,
        auto_close_after=14400,
    )
    friday = _next_friday_evening(await skip_env.get_current_time())
    await skip_env.sleep(friday - await skip_env.get_current_time())
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Do you deliver on Sundays?"},
            settings=settings_for(task_queue),
        )
        handle = skip_env.client.get_workflow_handle(
            view.notification_id, result_type=NotificationOutcome
        )
        await until(lambda: bool(channel.to(shop.admins[0].phone)))
        # Past Monday 13:00 on the shop's clock (the weekend is closed).
        await skip_env.sleep(timedelta(days=3, hours=6))
        outcome = await handle.result()
        history = await handle.fetch_history()
    assert outcome.status == "expired"
    fired = [
        e.event_time.ToDatetime(tzinfo=UTC).astimezone(NY)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    ]
    monday = (friday.astimezone(NY) + timedelta(days=3)).date()
    # Reminder 30 min, escalation 2 h, auto-close 4 h of open time: Monday 09:30, 11:00, 13:00.
    assert [(t.date(), t.strftime("%H:%M")) for t in fired] == [
        (monday, "09:30"),
        (monday, "11:00"),
        (monday, "13:00"),
    ]


async def test_urgent_asks_the_on_call_user_at_once_with_halved_timers(
    dev_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory(admins=1, others=(), on_call=("oncall",))
    oncall = shop.user("oncall")
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            dev_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "My order is stuck at customs!"},
            settings=settings_for(task_queue),
            priority="urgent",
        )
        await until(
            lambda: bool(channel.to(oncall.phone)) and bool(channel.to(shop.admins[0].phone))
        )
        handle = dev_env.client.get_workflow_handle(view.notification_id)
        described = await handle.describe()
        summary = await described.static_summary()
        await starter.close_notification(dev_env.client, db, view.notification_id)
    assert described.typed_search_attributes.get(NOTIFICATION_PRIORITY) == "urgent"
    assert "URGENT" in (summary or "")
    row = await starter.get_notification(db, view.notification_id)
    assert row.priority == "urgent"
    assert oncall.id in {r.merchant_user_id for r in row.recipients}
    # Halved: the default 30 min reminder deadline becomes the 15 min first-answer due time.
    due = row.sla.first_answer_due_at
    assert due is not None and timedelta(minutes=14) < due - row.created_at <= timedelta(minutes=15)


async def test_a_breached_target_escalates_at_once(
    skip_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory(admins=1, others=(), on_call=("oncall",))
    await _hours(db, shop.merchant_id, "UTC", first_answer_target=600)
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Is the red one back in stock?"},
            settings=settings_for(task_queue),
        )
        handle = skip_env.client.get_workflow_handle(view.notification_id)
        await until(lambda: bool(channel.to(shop.admins[0].phone)))
        await skip_env.sleep(timedelta(minutes=11))
        status = await handle.query("status", result_type=WorkflowStatus)
        assert status.escalated and status.reminders_sent == 0
        await until(lambda: bool(channel.to(shop.user("oncall").phone)))
        await starter.close_notification(skip_env.client, db, view.notification_id)
    # The target passed on the workflow's (skipped) clock; the SLA view judges by wall time.
    async with db() as session:
        stored = await session.get(Notification, parse_notification_id(view.notification_id))
    assert stored is not None and stored.first_answer_due_at is not None
    # Closed before its (real-time) due time, it is not a breach ...
    assert sla_view(stored).breached_at is None
    # ... while still open past it, it is.
    stored.closed_at = None
    sla = sla_view(stored, now=stored.first_answer_due_at + timedelta(seconds=1))
    assert sla.breached_at == stored.first_answer_due_at and sla.answered_within_target is False


async def test_a_settings_change_retimes_waiting_notifications_and_the_report_counts(
    dev_env, db, task_queue, channel, shop_factory
) -> None:
    shop = await shop_factory(admins=1, others=())
    admin = shop.admins[0]
    app = create_app_for(db, dev_env, task_queue)
    async with running_worker(dev_env.client, db, task_queue, channel), client_for(app) as api:
        view = await starter.request_notification(
            dev_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Can I change my delivery address?"},
            settings=settings_for(task_queue),
        )
        await until(lambda: len(channel.to(admin.phone)) == 1)
        query = f"MerchantId = {shop.merchant_id} AND ExecutionStatus = 'Running'"

        async def visible() -> bool:
            return (await dev_env.client.count_workflows(query)).count == 1

        await until_async(visible)
        put = await api.put(
            f"/v1/merchants/{shop.merchant_id}/settings",
            json={"remind_after": 2, "escalate_after": 3000, "auto_close_after": 6000},
        )
        assert put.status_code == 200, put.text
        assert put.json()["waiting_retimed"] == 1
        # The 30 minute reminder now comes 2 s after the request.
        await until(lambda: len(channel.to(admin.phone)) == 2, timeout=30)
        await starter.answer_notification(
            dev_env.client, db, view.notification_id, answered_by=admin.id, answer={"answer": "Yes"}
        )
        await dev_env.client.get_workflow_handle(view.notification_id).result()
        report = await api.get(f"/v1/merchants/{shop.merchant_id}/sla")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["count"] == 1 and body["breaches"] == 0
    assert body["answered_within_target_pct"] == 100.0
    assert body["time_to_first_answer_p50_s"] > 0
    assert body["csat_average"] is None


def create_app_for(db, dev_env, task_queue):  # type: ignore[no-untyped-def]
    from notifyflow.api.app import create_app

    return create_app(
        make_settings(TEMPORAL_TASK_QUEUE=task_queue),
        session_factory=db,
        temporal_client=dev_env.client,
    )


async def until_async(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)
