"""The whole lifecycle on the time-skipping server with a real database: request, fan-out,
answer, localization, the 24-hour decision, delivery, closure notices, timers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from notifyflow import starter
from notifyflow.db.tables import Document, Notification, NotificationAnswer
from notifyflow.db.types import utcnow
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import closure_notice
from notifyflow.models.workflow_io import AnswerSource, NotificationOutcome, Stage, WorkflowStatus
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for
from tests.workflows.helpers import deliveries, messages, result, until, wait_status


async def test_question_is_routed_answered_localized_and_delivered_free_form(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    settings = settings_for(task_queue)
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "What are your business hours?"},
            settings=settings,
        )
        public = view.notification_id
        assert view.status == "requested"
        # Both admins get the request campaign, naming the notification and the question.
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        for admin in shop.admins:
            (request,) = channel.to(admin.phone)
            assert request.kind == "template"
            assert request.variables == {"1": public, "2": "What are your business hours?"}
        accepted = await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={"answer": "We are open   Mon-Fri\n9am-5pm EST"},
        )
        assert accepted.accepted and accepted.status == "answered"
        outcome = await result(skip_env.client, public)
    assert outcome.status == "delivered"
    row = await wait_status(db, public, {"delivered"})
    assert row.delivery_method == "direct" and row.answered_by == shop.admins[0].id
    # The customer wrote just now: a free-form reply, cleaned up by the offline localizer.
    (reply,) = channel.to(shop.customer_phone)
    assert reply.kind == "text" and "Mon-Fri 9am-5pm EST" in reply.body
    # The other admin is told, with the contract text; the answerer is not.
    notice = channel.to(shop.admins[1].phone)[-1]
    assert (notice.kind, notice.variables) == ("template", {"1": closure_notice(public)})
    assert len(channel.to(shop.admins[0].phone)) == 1
    # The question and its answer are now a knowledge-base document.
    async with db() as session:
        doc = await session.get(Document, row.document_id)
        assert doc is not None and doc.category == "UserQuestion"
        assert doc.title == "What are your business hours?"
        assert "Mon-Fri" in doc.content
    view = await starter.get_notification(db, public)
    assert [a.accepted for a in view.answers] == [True]
    assert view.delivery.method == "direct" and view.delivered_at is not None
    # Each admin's own conversation holds the instruction and the template send.
    admin_msgs = await messages(
        db, _recipient_conv(view, shop.admins[0].id, await deliveries(db, public))
    )
    kinds = [m.other_data.get("kind") for m in admin_msgs]
    assert kinds[0] == "notification_instruction"
    assert public in admin_msgs[0].content and "AnswerNotificationTool" in admin_msgs[0].content
    assert admin_msgs[0].other_data["notification_ids"] == [public]
    assert any((m.whatsapp_payload or {}).get("type") == "template" for m in admin_msgs)


def _recipient_conv(view, user_id, rows) -> int:  # type: ignore[no-untyped-def]
    return next(d.conversation_id for d in rows if d.merchant_user_id == user_id)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (timedelta(hours=23, minutes=59), "direct"),
        (timedelta(hours=24, minutes=1), "campaign"),
        (None, "campaign"),
    ],
    ids=["23h59m-free-form", "24h01m-template", "never-template"],
)
async def test_24_hour_rule_decides_at_send_time(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory, age, expected
) -> None:
    last = None if age is None else utcnow() - age
    shop = await shop_factory(last_inbound=last)
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Do you ship to Peru?"},
            settings=settings_for(task_queue),
        )
        await starter.answer_notification(
            skip_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[1].id,
            answer={"answer": "Yes, we ship to Peru in 5 days."},
        )
        await result(skip_env.client, view.notification_id)
    row = await wait_status(db, view.notification_id, {"delivered"})
    assert row.delivery_method == expected
    (sent,) = channel.to(shop.customer_phone)
    if expected == "campaign":
        assert sent.kind == "template"
        # The Spanish answer template, its one variable the continuation fragment.
        assert sent.variables == {"1": "yes, we ship to Peru in 5 days."}
        assert sent.content_sid and sent.content_sid.startswith("HX")
    else:
        assert sent.kind == "text"


async def test_free_form_refused_for_the_window_falls_back_to_the_template(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    channel.window_closed.add(shop.customer_phone)
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Gift wrap?"},
            settings=settings_for(task_queue),
        )
        await starter.answer_notification(
            skip_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, for free."},
        )
        await result(skip_env.client, view.notification_id)
    row = await wait_status(db, view.notification_id, {"delivered"})
    assert row.delivery_method == "campaign"
    assert [s.kind for s in channel.to(shop.customer_phone)] == ["template"]
    rows = [d for d in await deliveries(db, view.notification_id) if d.recipient_kind == "customer"]
    assert [(d.method, d.status, d.error_code) for d in rows] == [
        ("direct", "failed", "63016"),
        ("campaign", "sent", None),
    ]


async def test_support_request_goes_to_the_classified_team_and_notes_stay_internal(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory(last_inbound=None)
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_support_request",
            conversation_id=shop.conversation_id,
            context={"support_request_reason": "Product arrived damaged, I need a refund"},
            settings=settings_for(task_queue),
        )
        public = view.notification_id
        returns = shop.user("returns")
        await until(lambda: bool(channel.to(returns.phone)))
        view = await starter.get_notification(db, public)
        assert [r.merchant_user_id for r in view.recipients] == [returns.id]
        assert view.context["support_request_type"] == "Returns"
        assert not any(channel.to(a.phone) for a in shop.admins)
        # An admin who was not asked may still answer (DESIGN §2).
        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={
                "agent_response_to_customer": "We are sending a replacement today.",
                "resolution_notes": "SECRET-NOTE refund approved by finance",
            },
        )
        await result(skip_env.client, public)
    await wait_status(db, public, {"delivered"})
    assert all("SECRET-NOTE" not in s.body for s in channel.sent)
    (sent,) = channel.to(shop.customer_phone)
    assert sent.kind == "template" and "replacement" in (sent.variables or {}).get("1", "")
    # The returns user, a recipient who did not answer, gets the closure notice.
    assert channel.to(returns.phone)[-1].variables == {"1": closure_notice(public)}


async def test_no_user_of_the_classified_type_falls_back_to_admins(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_support_request",
            conversation_id=shop.conversation_id,
            context={"support_request_reason": "The app has bugs and setup fails"},
            settings=settings_for(task_queue),
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        view = await starter.get_notification(db, view.notification_id)
        assert sorted(r.merchant_user_id for r in view.recipients) == sorted(
            a.id for a in shop.admins
        )
        assert view.context["support_request_type"] == "Technical"
        await starter.close_notification(skip_env.client, db, view.notification_id)


async def test_answers_are_refused_with_reasons_and_recorded(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    other = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_support_request",
            conversation_id=shop.conversation_id,
            context={"support_request_reason": "Which discount for bulk orders?"},
            settings=settings_for(task_queue),
        )
        public = view.notification_id
        sales = shop.user("sales")
        await until(lambda: bool(channel.to(sales.phone)))

        async def refused(answered_by: int, answer: object, nid: str = public) -> NotificationError:
            with pytest.raises(NotificationError) as info:
                await starter.answer_notification(
                    skip_env.client,
                    db,
                    nid,
                    answered_by=answered_by,
                    answer=answer,  # type: ignore[arg-type]
                )
            return info.value

        assert (await refused(sales.id, "{}", "NOTIF_x")).code is RefusalCode.malformed_id
        assert (await refused(sales.id, "{}", "NOTIF_2147483648")).code is RefusalCode.malformed_id
        assert (await refused(sales.id, "not json")).code is RefusalCode.not_json
        err = await refused(sales.id, {"resolution_notes": "x"})
        assert err.code is RefusalCode.missing_field
        assert err.details == [{"path": "/agent_response_to_customer", "message": "required"}]
        err = await refused(sales.id, {"agent_response_to_customer": 42})
        assert err.code is RefusalCode.schema_mismatch
        assert err.details[0]["path"] == "/agent_response_to_customer"
        assert err.http_status == 422
        # The returns user was not asked; another merchant's admin never may.
        assert (
            await refused(shop.user("returns").id, {"agent_response_to_customer": "hi"})
        ).code is RefusalCode.not_allowed
        assert (
            await refused(other.admins[0].id, {"agent_response_to_customer": "hi"})
        ).http_status == 403

        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=sales.id,
            answer={"agent_response_to_customer": "10% off from 20 units."},
        )
        err = await refused(shop.admins[0].id, {"agent_response_to_customer": "again"})
        assert err.code is RefusalCode.already_answered and err.http_status == 409
        await result(skip_env.client, public)
        # After the workflow is done, the answer is still refused, as closed-by-answer.
        err = await refused(shop.admins[0].id, {"agent_response_to_customer": "late"})
        assert err.http_status == 409
    async with db() as session:
        rows = (
            await session.scalars(
                select(NotificationAnswer).where(
                    NotificationAnswer.notification_id == int(public.split("_")[1])
                )
            )
        ).all()
    refused_codes = [r.reason_code for r in rows if not r.accepted]
    assert refused_codes.count("not_json") == 1 and "not_allowed" in refused_codes
    assert [r.accepted for r in rows].count(True) == 1
    assert len(channel.to(shop.customer_phone)) == 1


async def test_request_validation_happens_before_anything_durable(
    skip_env, db, task_queue, shop_factory
) -> None:
    shop = await shop_factory()
    settings = settings_for(task_queue)
    cases = [
        ("user_complaint", shop.conversation_id, {"question": "x"}, RefusalCode.unknown_type),
        ("user_question_request", shop.conversation_id, {}, RefusalCode.missing_field),
        (
            "user_question_request",
            shop.conversation_id,
            {"question": "  "},
            RefusalCode.missing_field,
        ),
        (
            "user_support_request",
            shop.conversation_id,
            {"question": "x"},
            RefusalCode.missing_field,
        ),
        ("user_question_request", 2_000_000_000, {"question": "x"}, RefusalCode.not_found),
    ]
    async with db() as session:
        before = len((await session.scalars(select(Notification.id))).all())
    for type_, conv, context, code in cases:
        with pytest.raises(NotificationError) as info:
            await starter.request_notification(
                skip_env.client,
                db,
                type=type_,
                conversation_id=conv,
                context=context,
                settings=settings,
            )
        assert info.value.code is code
    async with db() as session:
        assert len((await session.scalars(select(Notification.id))).all()) == before


async def test_idempotency_key_returns_the_same_notification_and_one_fan_out(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory()
    key = f"voyager-{shop.conversation_id}-q1"
    async with running_worker(skip_env.client, db, task_queue, channel):
        views = await asyncio.gather(
            *(
                starter.request_notification(
                    skip_env.client,
                    db,
                    type="user_question_request",
                    conversation_id=shop.conversation_id,
                    context={"question": "Open Sunday?"},
                    idempotency_key=key,
                    settings=settings_for(task_queue),
                )
                for _ in range(5)
            )
        )
        assert len({v.notification_id for v in views}) == 1
        # The fan-out is over once the one workflow waits for an answer: then count.
        await _until_waiting(skip_env.client, views[0].notification_id)
        assert channel.fake.in_flight == 0
        assert [len(channel.to(a.phone)) for a in shop.admins] == [1, 1]
        await starter.close_notification(skip_env.client, db, views[0].notification_id)


async def test_reminder_then_escalation_then_auto_close(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory(others=("returns",), on_call=("oncall",), admins=1)
    settings = settings_for(
        task_queue,
        remind_after=timedelta(minutes=30),
        escalate_after=timedelta(hours=2),
        auto_close_after=timedelta(hours=24),
    )
    returns, oncall, admin = shop.user("returns"), shop.user("oncall"), shop.admins[0]
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_support_request",
            conversation_id=shop.conversation_id,
            context={"support_request_reason": "I want to return a wrong item"},
            settings=settings,
        )
        public = view.notification_id
        handle = skip_env.client.get_workflow_handle(public, result_type=NotificationOutcome)
        await until(lambda: bool(channel.to(returns.phone)))
        await skip_env.sleep(timedelta(minutes=31))
        status = await handle.query("status", result_type=WorkflowStatus)
        assert status.reminders_sent == 1 and not status.escalated
        assert len(channel.to(returns.phone)) == 2
        assert public in channel.to(returns.phone)[1].body
        assert not channel.to(oncall.phone)
        await skip_env.sleep(timedelta(hours=2))
        status = await handle.query("status", result_type=WorkflowStatus)
        assert status.escalated
        # On-call users and admins join; they may now answer.
        assert channel.to(oncall.phone) and channel.to(admin.phone)
        # Skip to the auto-close deadline first: a history long poll on the time-skipping
        # server can return empty when a whole day passes inside it.
        await skip_env.sleep(timedelta(hours=22))
        outcome = await handle.result()
    assert outcome.status == "expired"
    row = await wait_status(db, public, {"expired"})
    assert row.closed_at is not None
    for person in (returns, oncall, admin):
        assert "expired" in channel.to(person.phone)[-1].body
    # The customer is told politely (the offline localizer keeps the English text).
    (told,) = channel.to(shop.customer_phone)
    assert "could not get back to you" in told.body
    with pytest.raises(NotificationError) as info:
        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=admin.id,
            answer={"agent_response_to_customer": "too late"},
        )
    assert info.value.code is RefusalCode.closed


async def test_operator_close_and_ui_signal_answers(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    from notifyflow.models.workflow_io import AnswerSubmission, CloseRequest

    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        first = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Pets allowed?"},
            settings=settings_for(task_queue),
        )
        handle = skip_env.client.get_workflow_handle(
            first.notification_id, result_type=NotificationOutcome
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        # An invalid answer by signal is recorded as refused and breaks nothing.
        await handle.signal(
            "answer",
            AnswerSubmission(
                notification_id=first.notification_id,
                answered_by=shop.admins[0].id,
                answer_json="{oops",
                source=AnswerSource.ui,
            ),
        )
        await handle.signal(
            "answer",
            AnswerSubmission(
                notification_id=first.notification_id,
                answered_by=shop.admins[0].id,
                answer_json='{"answer": "Yes, pets are welcome."}',
                source=AnswerSource.ui,
            ),
        )
        outcome = await handle.result()
        assert outcome.status == "delivered"
        view = await starter.get_notification(db, first.notification_id)
        assert [(a.accepted, a.source, a.reason_code) for a in view.answers] == [
            (False, "ui", "not_json"),
            (True, "ui", None),
        ]

        second = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Parking?"},
            settings=settings_for(task_queue),
        )
        h2 = skip_env.client.get_workflow_handle(
            second.notification_id, result_type=NotificationOutcome
        )
        await h2.signal("close", CloseRequest(reason="asked twice"))
        outcome = await h2.result()
        assert outcome.status == "closed"
    row = await wait_status(db, second.notification_id, {"closed"})
    assert row.close_reason == "asked twice"
    assert "closed by an operator: asked twice" in channel.to(shop.admins[1].phone)[-1].body
    assert len(channel.to(shop.customer_phone)) == 1  # only the first one's answer


async def test_twenty_concurrent_answers_accept_exactly_one(
    dev_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    shop = await shop_factory(admins=4)
    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            dev_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Race?"},
            settings=settings_for(task_queue),
        )
        await until(lambda: all(channel.to(a.phone) for a in shop.admins))
        outcomes = await asyncio.gather(
            *(
                starter.answer_notification(
                    dev_env.client,
                    db,
                    view.notification_id,
                    answered_by=shop.admins[i % 4].id,
                    answer={"answer": f"answer {i}"},
                )
                for i in range(20)
            ),
            return_exceptions=True,
        )
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, NotificationError)]
        assert len(accepted) == 1 and len(refused) == 19
        assert {r.code for r in refused} == {RefusalCode.already_answered}
        await result(dev_env.client, view.notification_id)
    assert len(channel.to(shop.customer_phone)) == 1


async def test_a_notification_nobody_can_be_told_about_still_ends_in_a_terminal_state(
    skip_env, db, task_queue, channel: FakeTwilioChannel
) -> None:
    """The open step fails for good (here: its row does not exist): the workflow ends
    `closed` with the reason instead of failing."""
    from notifyflow.models.notification import NotificationType
    from notifyflow.models.workflow_io import NotificationWorkflowInput, Timing
    from notifyflow.workflows.notification import NotificationWorkflow

    async with running_worker(skip_env.client, db, task_queue, channel):
        handle = await skip_env.client.start_workflow(
            NotificationWorkflow.run,
            NotificationWorkflowInput(
                notification_id=2_100_000_000,
                type=NotificationType.user_question_request,
                merchant_id=1,
                conversation_id=1,
                headline="?",
                answer_schema={},
                answered_fields=["answer"],
                timing=Timing(
                    remind_after=timedelta(minutes=1),
                    escalate_after=timedelta(minutes=2),
                    auto_close_after=timedelta(minutes=3),
                ),
            ),
            id="NOTIF_2100000000",
            task_queue=task_queue,
        )
        outcome = await handle.result()
    assert outcome.status == "closed"
    assert "could not be notified" in (outcome.reason or "")
    assert channel.sent == []


async def _until_waiting(client, public: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Until the workflow's fan-out activity is done and it waits for an answer."""
    handle = client.get_workflow_handle(public)
    deadline = asyncio.get_running_loop().time() + timeout
    while (await handle.query("status", result_type=WorkflowStatus)).stage != Stage.waiting:
        assert asyncio.get_running_loop().time() < deadline, f"{public} never waited"
        await asyncio.sleep(0.02)


async def test_a_long_answer_reaches_the_customer_within_whatsapps_body_limit(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
) -> None:
    """Twilio refuses a Body over 1,600 characters on every channel, WhatsApp included (21617).
    The strict fake found that a long free-form answer ended the notification as
    delivery_failed, so the customer was never told anything."""
    shop = await shop_factory()
    words = " ".join(f"step{n:04d}" for n in range(300))  # 2,699 characters
    async with running_worker(skip_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "How do I assemble the wardrobe?"},
            settings=settings_for(task_queue),
        )
        await starter.answer_notification(
            skip_env.client,
            db,
            view.notification_id,
            answered_by=shop.admins[0].id,
            answer={"answer": words},
        )
        outcome = await result(skip_env.client, view.notification_id)
    assert outcome.status == "delivered", outcome.reason
    (sent,) = channel.to(shop.customer_phone)
    assert sent.kind == "text" and len(sent.body) <= 1600
    # As much of the answer as fits, cut at a word, marked as cut.
    assert sent.body.endswith("…") and words.startswith(sent.body[:-1].rstrip())
    assert len(sent.body) > 1500
