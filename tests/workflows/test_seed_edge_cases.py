"""One test per item of the reference note's "Error Handling" and "Edge Cases" lists, named
after it, plus the seed's "create new answered notification" path (update-with-start)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from notifyflow import starter
from notifyflow.db.tables import (
    ConversationUser,
    Document,
    Message,
    Notification,
)
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import NotificationType
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for
from tests.workflows.helpers import result, wait_status


async def _open(env: Any, db: Any, tq: str, shop: Shop, **context: str) -> str:
    kind = (
        "user_support_request" if "support_request_reason" in context else "user_question_request"
    )
    view = await starter.request_notification(
        env.client,
        db,
        type=kind,
        conversation_id=shop.conversation_id,
        context=context,
        settings=settings_for(tq),
    )
    return view.notification_id


async def _refusal(coro: Any) -> NotificationError:
    with pytest.raises(NotificationError) as info:
        await coro
    return info.value


# ---- Error Handling: at request time -----------------------------------------------------


async def test_request_missing_required_fields_in_context(skip_env, db, task_queue, shop_factory):
    shop = await shop_factory()
    err = await _refusal(
        starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"lead_phone": "+1"},
            settings=settings_for(task_queue),
        )
    )
    assert err.code is RefusalCode.missing_field and err.http_status == 422
    assert err.details == [{"path": "/context/question", "message": "required non-empty string"}]


async def test_request_invalid_notification_type(skip_env, db, task_queue, shop_factory):
    shop = await shop_factory()
    err = await _refusal(
        starter.request_notification(
            skip_env.client,
            db,
            type="user_refund_request",
            conversation_id=shop.conversation_id,
            context={"question": "x"},
            settings=settings_for(task_queue),
        )
    )
    assert err.code is RefusalCode.unknown_type and "user_question_request" in err.message


async def test_request_conversation_not_found(skip_env, db, task_queue):
    err = await _refusal(
        starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=987654321,
            context={"question": "x"},
            settings=settings_for(task_queue),
        )
    )
    assert err.code is RefusalCode.not_found and err.http_status == 404


# ---- Error Handling: at answer time ------------------------------------------------------


async def test_answer_notification_not_found(skip_env, db):
    err = await _refusal(
        starter.answer_notification(
            skip_env.client, db, "NOTIF_2000000001", answered_by=1, answer={"answer": "x"}
        )
    )
    assert err.code is RefusalCode.not_found and err.http_status == 404


async def test_answer_missing_answered_fields(skip_env, db, task_queue, channel, shop_factory):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Size chart?")
        err = await _refusal(
            starter.answer_notification(
                skip_env.client, db, public, answered_by=shop.admins[0].id, answer={}
            )
        )
        assert err.code is RefusalCode.missing_field
        await starter.close_notification(skip_env.client, db, public)


async def test_answer_notification_already_answered(
    skip_env, db, task_queue, channel, shop_factory
):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Warranty?")
        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={"answer": "Two years."},
        )
        err = await _refusal(
            starter.answer_notification(
                skip_env.client,
                db,
                public,
                answered_by=shop.admins[1].id,
                answer={"answer": "Three years."},
            )
        )
        assert err.code is RefusalCode.already_answered and err.http_status == 409
        await result(skip_env.client, public)
    assert len(channel.to(shop.customer_phone)) == 1


async def test_answer_document_not_found(skip_env, db, task_queue, channel, shop_factory):
    """The question's Document vanished before the answer: the Q&A is written anew rather
    than lost, and the customer still gets the answer."""
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Do you sell gift cards?")
        n = int(public.split("_")[1])
        async with db() as session:
            row = await session.get(Notification, n)
            assert row is not None
            doc_id = row.document_id
            row.document_id = None
            await session.flush()
            await session.execute(delete(Document).where(Document.id == doc_id))
            await session.commit()
        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, from 10 to 500 dollars."},
        )
        await result(skip_env.client, public)
    row = await wait_status(db, public, {"delivered"})
    async with db() as session:
        doc = await session.get(Document, row.document_id)
        assert doc is not None
        assert (doc.title, doc.content) == (
            "Do you sell gift cards?",
            "Yes, from 10 to 500 dollars.",
        )


async def test_answer_invalid_answer_json_format(skip_env, db, task_queue, channel, shop_factory):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Returns window?")
        for bad in ('{"answer": ', "[1, 2]", "answer: yes"):
            err = await _refusal(
                starter.answer_notification(
                    skip_env.client, db, public, answered_by=shop.admins[0].id, answer=bad
                )
            )
            assert err.code is RefusalCode.not_json and err.http_status == 422
        await starter.close_notification(skip_env.client, db, public)


async def test_answer_does_not_match_json_schema(skip_env, db, task_queue, channel, shop_factory):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Returns window?")
        err = await _refusal(
            starter.answer_notification(
                skip_env.client,
                db,
                public,
                answered_by=shop.admins[0].id,
                answer={"answer": ["30 days"], "extra": 1},
            )
        )
        assert err.code is RefusalCode.schema_mismatch
        assert {d["path"] for d in err.details} == {"/", "/answer"}
        await starter.close_notification(skip_env.client, db, public)


# ---- Edge Cases --------------------------------------------------------------------------


async def test_edge_no_merchant_users_for_classified_type_falls_back_to_admin(
    skip_env, db, task_queue, channel, shop_factory
):
    shop = await shop_factory(others=())
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(
            skip_env, db, task_queue, shop, support_request_reason="refund for a damaged item"
        )
        await wait_for_recipients(db, public)
        view = await starter.get_notification(db, public)
        assert {r.user_type for r in view.recipients} == {"admin"}
        assert view.context["support_request_type"] == "Returns"
        await starter.close_notification(skip_env.client, db, public)


async def wait_for_recipients(db: Any, public: str) -> None:
    import asyncio

    for _ in range(300):
        if (await starter.get_notification(db, public)).recipients:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no recipients recorded")


async def test_edge_no_conversation_user_for_merchant_phone_is_created(
    skip_env, db, task_queue, channel, shop_factory
):
    shop = await shop_factory()
    phones = [a.phone for a in shop.admins]
    async with db() as session:
        assert not (
            await session.scalars(
                select(ConversationUser).where(ConversationUser.phone.in_(phones))
            )
        ).all()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Who ships?")
        await wait_for_recipients(db, public)
        await starter.close_notification(skip_env.client, db, public)
    async with db() as session:
        count = await session.scalar(
            select(func.count(ConversationUser.id)).where(ConversationUser.phone.in_(phones))
        )
    assert count == 2


async def test_edge_empty_message_list_composes_safely(
    skip_env, db, task_queue, channel, shop_factory
):
    """The window is open but the conversation has no stored messages: the free-form reply
    is composed from an empty history without failing."""
    shop = await shop_factory()
    async with db() as session:
        await session.execute(
            delete(Message).where(Message.conversation_id == shop.conversation_id)
        )
        await session.commit()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Open late?")
        await starter.answer_notification(
            skip_env.client,
            db,
            public,
            answered_by=shop.admins[0].id,
            answer={"answer": "Until 9pm on Fridays."},
        )
        await result(skip_env.client, public)
    (sent,) = channel.to(shop.customer_phone)
    assert sent.kind == "text" and "9pm" in sent.body


@pytest.mark.parametrize(
    "text", ["NOTIF_2147483648", "NOTIF_99999999999999999999", "NOTIF_0", "NOTIF_-1", "NOTIF_01"]
)
async def test_edge_notification_id_overflow_validated_before_querying(skip_env, db, text):
    err = await _refusal(
        starter.answer_notification(skip_env.client, db, text, answered_by=1, answer={"a": 1})
    )
    assert err.code is RefusalCode.malformed_id and err.http_status == 400
    err = await _refusal(starter.get_notification(db, text))
    assert err.code is RefusalCode.malformed_id


async def test_edge_string_enum_mismatch_type_converted_before_use(
    skip_env, db, task_queue, channel, shop_factory
):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        # The enum member and its string value are the same type to every entry point.
        view = await starter.request_notification(
            skip_env.client,
            db,
            type=NotificationType.user_question_request,
            conversation_id=shop.conversation_id,
            context={"question": "Enum?"},
            settings=settings_for(task_queue),
        )
        listed = await starter.list_notifications(
            db, type="user_question_request", merchant_id=shop.merchant_id
        )
        assert [v.notification_id for v in listed] == [view.notification_id]
        assert listed[0].type == "user_question_request"
        await starter.close_notification(skip_env.client, db, view.notification_id)


# ---- "create new answered notification": update-with-start -------------------------------


async def test_answer_with_no_prior_request_creates_an_answered_notification(
    skip_env, db, task_queue, channel: FakeTwilioChannel, shop_factory
):
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        accepted = await starter.answer_new_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Do you deliver?"},
            answered_by=shop.admins[0].id,
            answer={"answer": "Yes, nationwide."},
            settings=settings_for(task_queue),
        )
        assert accepted.accepted
        outcome = await result(skip_env.client, accepted.notification_id)
    assert outcome.status == "delivered"
    # No fan-out: nobody but the customer was messaged.
    assert [s.to for s in channel.sent] == [shop.customer_phone]
    view = await starter.get_notification(db, accepted.notification_id)
    assert [a.accepted for a in view.answers] == [True]
    # A bad answer creates nothing.
    err = await _refusal(
        starter.answer_new_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Again?"},
            answered_by=shop.admins[0].id,
            answer={"nope": 1},
            settings=settings_for(task_queue),
        )
    )
    assert err.code in (RefusalCode.missing_field, RefusalCode.schema_mismatch)
    err = await _refusal(
        starter.answer_new_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Again?"},
            answered_by=shop.user("sales").id,
            answer={"answer": "x"},
            settings=settings_for(task_queue),
        )
    )
    assert err.code is RefusalCode.not_allowed
    assert len(await starter.list_notifications(db, merchant_id=shop.merchant_id)) == 1


@pytest.mark.parametrize(
    "answer",
    [{"answer": "bad \x00 byte"}, {"answer": "lone \ud800 surrogate"}],
    ids=["nul", "surrogate"],
)
async def test_answer_text_no_database_can_store_is_refused_by_the_workflow(
    skip_env, db, task_queue, channel, shop_factory, answer
):
    """Refused in the update validator itself, so every entry point (tool, API, CLI, WhatsApp,
    UI signal) is covered, and nothing reaches PostgreSQL to fail there."""
    shop = await shop_factory()
    async with running_worker(skip_env.client, db, task_queue, channel):
        public = await _open(skip_env, db, task_queue, shop, question="Odd bytes?")
        err = await _refusal(
            starter.answer_notification(
                skip_env.client,
                db,
                public,
                answered_by=shop.admins[0].id,
                answer=json.dumps(answer),
            )
        )
        assert err.code is RefusalCode.schema_mismatch and err.details[0]["path"] == "/answer"
        await starter.close_notification(skip_env.client, db, public)


async def test_request_context_no_database_can_store_is_refused(
    skip_env, db, task_queue, shop_factory
):
    shop = await shop_factory()
    err = await _refusal(
        starter.request_notification(
            skip_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "nul \x00 here"},
            settings=settings_for(task_queue),
        )
    )
    assert err.code is RefusalCode.invalid_input and err.details[0]["path"] == "/context/question"
