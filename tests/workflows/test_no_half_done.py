"""DESIGN §7 on a real dev server: a request recorded without its workflow is carried through
by the sweeper, closed or answered; an admin's answer is taken while the fan-out is being
retried; a configuration error ends a notification at once with a reason."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from sqlalchemy import delete, select

from notifyflow import starter, sweeper
from notifyflow.channels.base import SendError
from notifyflow.db.seed import ensure_default_templates
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import CampaignTemplate, Notification
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.notification import Campaign
from notifyflow.models.views import NotificationView
from notifyflow.worker import log_template_gaps
from tests.figures import figure
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for
from tests.workflows.helpers import result, until, wait_status

QUESTION = {"question": "Do you ship to Canada?"}


async def _ask(env: Any, db: SessionFactory, shop: Shop, task_queue: str) -> NotificationView:
    """The customer's question to ``shop``, through the starter as the API sends it."""
    return await starter.request_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context=dict(QUESTION),
        settings=settings_for(task_queue),
    )


async def _request_without_workflow(
    env: Any, db: SessionFactory, shop: Shop, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A request whose workflow start fails after the row is committed (Temporal away)."""

    async def unavailable(*_args: Any, **_kwargs: Any) -> bool:
        raise TimeoutError

    with monkeypatch.context() as patch:
        patch.setattr(starter, "ensure_started", unavailable)
        view = await _ask(env, db, shop, task_queue)
    return view.notification_id


async def _workflow_exists(env: Any, public: str) -> bool:
    try:
        await env.client.get_workflow_handle(public).describe()
    except Exception:
        return False
    return True


async def _started_at(db: SessionFactory, public: str) -> Any:
    async with db() as session:
        row = await session.get(Notification, parse_notification_id(public))
        assert row is not None
        return row.workflow_started_at


async def test_a_request_whose_start_failed_is_recorded_and_the_sweeper_starts_it_once(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, monkeypatch
) -> None:
    shop = await shop_factory()
    public = await _request_without_workflow(dev_env, db, shop, task_queue, monkeypatch)
    assert not await _workflow_exists(dev_env, public)
    assert await _started_at(db, public) is None
    settings = settings_for(task_queue)
    async with running_worker(dev_env.client, db, task_queue, channel):
        # Too young: the request that wrote it may still be starting it. (The session's
        # database is shared, so other tests' older rows may be swept meanwhile.)
        await sweeper.sweep_once(dev_env.client, db, settings)
        assert not await _workflow_exists(dev_env, public)
        # Past the grace period the sweeper starts it.
        assert await sweeper.sweep_once(dev_env.client, db, settings, grace=_zero()) >= 1
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        assert await _started_at(db, public) is not None
        # Swept again: nothing left to do for it, and nobody is asked twice.
        await sweeper.sweep_once(dev_env.client, db, settings, grace=_zero())
        await starter.answer_notification(
            dev_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, in 5 days"},
        )
        outcome = await result(dev_env.client, public)
    assert outcome.status == "delivered"
    for admin in shop.admins:
        assert [s.key for s in channel.to(admin.phone)].count(f"{public}:request:{admin.id}") == 1


async def test_the_workers_sweep_loop_starts_an_orphan_once(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, monkeypatch
) -> None:
    """The worker's sweep loop as it runs (its period and grace from the settings; that they
    are kept is tests/unit/test_sweeper_loop.py): an orphan is started, its admins are asked
    once however many ticks follow, and its answer is delivered."""
    shop = await shop_factory()
    public = await _request_without_workflow(dev_env, db, shop, task_queue, monkeypatch)
    settings = settings_for(task_queue).model_copy(
        update={"sweep_every_seconds": 0.2, "sweep_grace_seconds": 0.0}
    )
    stop = asyncio.Event()
    async with running_worker(dev_env.client, db, task_queue, channel):
        loop = asyncio.create_task(sweeper.run_sweeper(dev_env.client, db, settings, stop))
        try:
            await until(lambda: all(channel.to(a.phone) for a in shop.admins), timeout=30.0)
            # Several more ticks: nobody is asked twice.
            await asyncio.sleep(0.6)
        finally:
            stop.set()
            await asyncio.wait_for(loop, 5)
        assert await _started_at(db, public) is not None
        await starter.answer_notification(
            dev_env.client, db, public, answered_by=shop.admins[0].id, answer={"answer": "Yes"}
        )
        outcome = await result(dev_env.client, public)
    assert outcome.status == "delivered"
    for admin in shop.admins:
        assert [s.key for s in channel.to(admin.phone)].count(f"{public}:request:{admin.id}") == 1


async def test_closing_a_notification_whose_workflow_never_started_closes_it_and_asks_nobody(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, monkeypatch
) -> None:
    shop = await shop_factory()
    public = await _request_without_workflow(dev_env, db, shop, task_queue, monkeypatch)
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await starter.close_notification(
            dev_env.client, db, public, reason="duplicate", settings=settings_for(task_queue)
        )
        assert view.status == "closed" and view.close_reason == "duplicate"
        outcome = await result(dev_env.client, public)
    assert outcome.status == "closed"
    assert channel.sent == []
    # The sweeper leaves a closed row alone.
    assert (await starter.get_notification(db, public)).status == "closed"
    with pytest.raises(NotificationError) as refused:
        await starter.close_notification(dev_env.client, db, public)
    assert refused.value.code is RefusalCode.closed
    assert f"{public} is closed" in refused.value.message
    with pytest.raises(NotificationError) as answered:
        await starter.answer_notification(
            dev_env.client, db, public, answered_by=shop.admins[0].id, answer={"answer": "x"}
        )
    assert answered.value.code is RefusalCode.closed


async def test_an_answer_to_a_notification_whose_workflow_never_started_starts_it(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, monkeypatch
) -> None:
    shop = await shop_factory()
    public = await _request_without_workflow(dev_env, db, shop, task_queue, monkeypatch)
    async with running_worker(dev_env.client, db, task_queue, channel):
        accepted = await starter.answer_notification(
            dev_env.client,
            db,
            public,
            answered_by=shop.admins[1].id,
            answer={"answer": "Yes"},
            settings=settings_for(task_queue),
        )
        assert accepted.accepted
        outcome = await result(dev_env.client, public)
    assert outcome.status == "delivered"
    assert len(channel.to(shop.customer_phone)) == 1


async def test_an_admin_answer_while_the_fan_out_is_retried_is_accepted_at_once(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    """Finding 3 of the deployment issue: the answer used to wait for the recipients."""
    shop = await shop_factory()
    # One admin's sends fail (rate limited) three times: the open activity is retried for
    # about 7 s (1 + 2 + 4 s of backoff).
    channel.fail_times[shop.admins[1].phone] = 3
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await _ask(dev_env, db, shop, task_queue)
        await until(lambda: bool(channel.to(shop.admins[0].phone)))
        t0 = time.perf_counter()
        accepted = await starter.answer_notification(
            dev_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, in 5 days"},
        )
        waited = time.perf_counter() - t0
        assert accepted.accepted and accepted.status == "answered"
        # Still retrying the fan-out when the answer was taken.
        assert channel.fail_times[shop.admins[1].phone] > 0
        # The same answer again (a client retrying after a timeout) is the same answer.
        again = await starter.answer_notification(
            dev_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, in 5 days"},
        )
        assert again.accepted
        outcome = await result(dev_env.client, view.notification_id)
    figure("answer accepted while the fan-out was being retried", waited, "s")
    assert outcome.status == "delivered"
    assert len(channel.to(shop.customer_phone)) == 1
    view = await starter.get_notification(db, view.notification_id)
    assert [a.accepted for a in view.answers] == [True]


async def test_a_non_admin_answering_before_routing_is_told_to_try_again(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    sales = shop.user("sales")
    # Every admin's send keeps failing: routing (the open activity) never completes here.
    for admin in shop.admins:
        channel.fail_times[admin.phone] = 1_000
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await _ask(dev_env, db, shop, task_queue)
        with pytest.raises(NotificationError) as refused:
            await starter.answer_notification(
                dev_env.client,
                db,
                view.notification_id,
                answered_by=sales.id,
                answer={"answer": "Yes"},
            )
        assert refused.value.code is RefusalCode.not_ready
        assert refused.value.http_status == 503
        # The close cancels the open, which would retry its sends for a day.
        closed = await starter.close_notification(dev_env.client, db, view.notification_id)
        assert closed.status == "closed"
    # "Not ready" is not a refusal of the answer: the history holds no refused attempt.
    assert (await starter.get_notification(db, view.notification_id)).answers == []


async def test_a_close_while_the_fan_out_keeps_failing_ends_it_and_nobody_more_is_asked(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    """The customer withdraws while every send to one admin is refused (429), so the open
    keeps retrying: the close ends the notification at once, the admin who was asked is told
    it is closed, and once the provider recovers the other admin is not asked."""
    shop = await shop_factory()
    asked, refused = shop.admins[0], shop.admins[1]
    channel.fail_times[refused.phone] = 1_000
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await _ask(dev_env, db, shop, task_queue)
        await until(
            lambda: channel.fail_times[refused.phone] < 1_000 and bool(channel.to(asked.phone))
        )
        requests = len(channel.to(asked.phone))
        t0 = time.perf_counter()
        closed = await starter.close_notification(
            dev_env.client, db, view.notification_id, reason="the customer withdrew"
        )
        figure("close while the fan-out is retried → closed", time.perf_counter() - t0, "s")
        assert closed.status == "closed" and closed.close_reason == "the customer withdrew"
        channel.fake.clear_faults()
        # Past the activity's next retries (1 s, then 2 s): none of them may ask anyone.
        await asyncio.sleep(4)
        assert channel.to(refused.phone) == []
        told = channel.to(asked.phone)[requests:]
        notice = (
            f"Notification {view.notification_id} was closed by an operator: the customer withdrew"
        )
        assert len(told) == 1 and notice in told[0].body, [m.body for m in told]
        with pytest.raises(NotificationError) as late:
            await starter.answer_notification(
                dev_env.client,
                db,
                view.notification_id,
                answered_by=asked.id,
                answer={"answer": "Yes"},
            )
        assert late.value.http_status == 409
    outcome = await result(dev_env.client, view.notification_id)
    assert outcome.status == "closed"


async def test_a_close_during_the_first_attempt_of_the_fan_out_cancels_it(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    """The close arrives while the open's first attempt (a local activity, in the workflow's
    first task) waits on the provider: that attempt is cancelled and the notification ends
    closed instead of failing its workflow."""
    shop = await shop_factory()
    for admin in shop.admins:
        channel.fake.timeout_next(delay=8, to=admin.phone, times=None)
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await _ask(dev_env, db, shop, task_queue)
        await until(lambda: channel.fake.in_flight > 0)
        closed = await starter.close_notification(
            dev_env.client, db, view.notification_id, reason="the customer withdrew"
        )
        assert closed.status == "closed"
        channel.fake.clear_faults()
        await asyncio.sleep(3)
        assert [m for a in shop.admins for m in channel.to(a.phone)] == []
    outcome = await result(dev_env.client, view.notification_id)
    assert outcome.status == "closed"


async def test_a_temporal_cancel_during_the_fan_out_still_ends_in_a_terminal_state(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    """An operator cancels the workflow in the Temporal UI while the open retries: as before
    the close could cancel the open, the cancellation reaches the open activity and the
    notification ends closed with the reason, its row terminal."""
    shop = await shop_factory()
    for admin in shop.admins:
        channel.fail_times[admin.phone] = 1_000
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await _ask(dev_env, db, shop, task_queue)
        await until(lambda: any(channel.fail_times[a.phone] < 1_000 for a in shop.admins))
        await dev_env.client.get_workflow_handle(view.notification_id).cancel()
        outcome = await result(dev_env.client, view.notification_id)
    assert outcome.status == "closed"
    view = await starter.get_notification(db, view.notification_id)
    assert view.status == "closed" and view.close_reason


async def test_credentials_refused_by_the_channel_end_the_notification_at_once(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    for admin in shop.admins:
        channel.refuse[admin.phone] = SendError(
            "20003", "Authenticate", extra={"http_status": "401"}, config_error=True
        )
    async with running_worker(dev_env.client, db, task_queue, channel):
        t0 = time.perf_counter()
        view = await _ask(dev_env, db, shop, task_queue)
        outcome = await result(dev_env.client, view.notification_id)
        took = time.perf_counter() - t0
    figure("configuration error (credentials refused) to a terminal state", took, "s")
    assert outcome.status == "closed"
    assert (outcome.reason or "").startswith("configuration error:")
    assert "20003" in (outcome.reason or "")
    view = await starter.get_notification(db, view.notification_id)
    assert view.status == "closed" and (view.close_reason or "").startswith("configuration error")


async def test_a_campaign_without_any_template_is_a_configuration_error(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, caplog
) -> None:
    from notifyflow.outreach.templates import clear_template_cache

    shop = await shop_factory()
    campaign = Campaign.merchant_user_question_request
    async with db() as session:
        await session.execute(
            delete(CampaignTemplate).where(CampaignTemplate.campaign == campaign.value)
        )
        await session.commit()
    clear_template_cache()
    try:
        with caplog.at_level(logging.ERROR, logger="notifyflow.worker"):
            assert await log_template_gaps(db) == [campaign.value]
        assert f"campaign {campaign.value} has no default template" in caplog.text
        async with running_worker(dev_env.client, db, task_queue, channel):
            view = await _ask(dev_env, db, shop, task_queue)
            outcome = await asyncio.wait_for(result(dev_env.client, view.notification_id), 60)
        assert outcome.status == "closed"
        assert outcome.reason == (
            f"configuration error: no template for campaign {campaign.value} in en"
        )
        assert channel.sent == []
        row = await wait_status(db, view.notification_id, {"closed"})
        assert row.close_reason == outcome.reason
        # Nobody was asked, but who would have been is on record (the routing's writes go
        # in although no claim carried them).
        closed = await starter.get_notification(db, view.notification_id)
        assert sorted(r.merchant_user_id for r in closed.recipients) == sorted(
            a.id for a in shop.admins
        )
    finally:
        await ensure_default_templates(db)
        clear_template_cache()
    assert await log_template_gaps(db) == []
    async with db() as session:
        assert await session.scalar(
            select(CampaignTemplate.id).where(CampaignTemplate.campaign == campaign.value)
        )


def _zero() -> Any:
    from datetime import timedelta

    return timedelta(0)
