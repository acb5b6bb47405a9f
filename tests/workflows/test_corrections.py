"""Corrections of a delivered answer (DESIGN §10) on a real dev server, the real twilio SDK
against the fake Twilio and the real openai SDK against the fake OpenAI: the customer gets the
correction once, worded as one and localized, by the 24-hour rule; the question's Document
keeps every version; refusals (not delivered, an invalid answer, a stranger) change nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from notifyflow import corrections, directory, starter
from notifyflow.ai.openai_provider import OpenAIProvider
from notifyflow.api.app import create_app
from notifyflow.config import Settings
from notifyflow.db.seed import default_content_sid
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerVersion, Notification
from notifyflow.history_costs import history_cost
from notifyflow.models.corrections import CorrectionResult, correction_workflow_id
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.notification import Campaign
from tests.api.conftest import client_for
from tests.fakes.openai_server import FakeAIRequest, FakeOpenAI
from tests.fakes.twilio_server import FakeTwilio
from tests.figures import figure
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for
from tests.workflows.helpers import result, until

QUESTION = {"question": "¿A qué hora abren el domingo?"}
_NO_GRACE = timedelta(0)


def tagging_llm(request: FakeAIRequest) -> str:
    """A stand-in model: 'translates' by tagging the text; composes by delivering the
    merchant's answer block as it is (so the test can read what the reply says)."""
    text = request.last_user_text
    if request.schema_name == "LocalizedMessage":
        inner = text.split(">", 1)[-1].split("<", 1)[0].strip() if "<" in text else text
        return json.dumps(
            {"continuation_fragment": f"(es) {inner}", "full_sentence": f"(es) {inner}"}
        )
    block = text.split("merchant-answer", 1)[-1]
    return block.split(">", 1)[-1].split("</", 1)[0].strip()


async def _delivered(client: Client, db: SessionFactory, settings: Settings, shop: Shop) -> str:
    view = await starter.request_notification(
        client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context=dict(QUESTION),
        settings=settings,
    )
    public = view.notification_id
    await starter.answer_notification(
        client, db, public, answered_by=shop.admins[0].id, answer={"answer": "We open at 10."}
    )
    assert (await result(client, public)).status == "delivered"
    return public


async def _correct(
    client: Client,
    db: SessionFactory,
    settings: Settings,
    public: str,
    by: int,
    text: str,
    **kw: Any,
) -> CorrectionResult:
    accepted = await corrections.correct_notification(
        client, db, public, answered_by=by, answer={"answer": text}, settings=settings, **kw
    )
    assert not accepted.duplicate
    handle = client.get_workflow_handle(
        correction_workflow_id(parse_notification_id(public), accepted.version),
        result_type=CorrectionResult,
    )
    return await handle.result()


async def _document(db: SessionFactory, public: str) -> Any:
    async with db() as session:
        row = await session.get(Notification, parse_notification_id(public))
        assert row is not None and row.document_id is not None
    return await directory.get_document(db, row.merchant_id, row.document_id)


async def _version_rows(db: SessionFactory, public: str) -> int:
    async with db() as session:
        return int(
            await session.scalar(
                select(func.count(AnswerVersion.id)).where(
                    AnswerVersion.notification_id == parse_notification_id(public)
                )
            )
            or 0
        )


async def test_a_correction_reaches_the_customer_localized_and_the_document_keeps_versions(
    dev_env,
    db,
    task_queue,
    shop_factory,
    twilio: FakeTwilio,
    openai: FakeOpenAI,
    provider_settings: Settings,
    channel: FakeTwilioChannel,
) -> None:
    openai.set_responder(tagging_llm)
    settings = settings_for(task_queue)
    shop = await shop_factory(language="es")
    ai = OpenAIProvider(provider_settings)
    admin = shop.admins[0]
    try:
        async with running_worker(dev_env.client, db, task_queue, channel, ai=ai):
            public = await _delivered(dev_env.client, db, settings, shop)
            second = await _correct(
                dev_env.client, db, settings, public, admin.id, "We open at 11."
            )
            assert (second.version, second.status, second.method) == (2, "sent", "direct")
            document = await _document(db, public)
            assert document.content == "We open at 11."
            assert [(v.version, v.content) for v in document.versions] == [
                (1, "We open at 10."),
                (2, "We open at 11."),
            ]
            # A correction of the correction: version 3, by the other admin.
            third = await _correct(
                dev_env.client, db, settings, public, shop.admins[1].id, "We open at 12."
            )
            assert (third.version, third.status) == (3, "sent")
    finally:
        await ai.aclose()
    answer, *fixes = twilio.accepted(shop.customer_phone)
    assert answer["kind"] == "text" and "(es) We open at 10" in answer["body"]
    # Inside the customer's window: free-form, saying in Spanish that it corrects the earlier
    # answer, with the localized corrected words; one message per version.
    assert [f["kind"] for f in fixes] == ["text", "text"]
    assert fixes[0]["body"].startswith("Una corrección a nuestra respuesta anterior:")
    assert "(es) We open at 11." in fixes[0]["body"]
    assert "(es) We open at 12." in fixes[1]["body"]
    keys = [s.key for s in channel.to(shop.customer_phone)]
    assert keys[1:] == [f"{public}:correction-2:customer", f"{public}:correction-3:customer"]
    document = await _document(db, public)
    assert document.content == "We open at 12."
    assert [v.version for v in document.versions] == [1, 2, 3]
    view = await starter.get_notification(db, public)
    assert view.status == "delivered"
    accepted = [a for a in view.answers if a.accepted]
    assert [(a.kind, a.version, a.delivery_status) for a in accepted] == [
        ("answer", 1, None),
        ("correction", 2, "sent"),
        ("correction", 3, "sent"),
    ]
    assert json.loads(accepted[-1].answer) == {"answer": "We open at 12."}
    timeline = await starter.notification_timeline(db, public)
    events = [e.event for e in timeline]
    assert "correction v2" in events and "correction v3" in events
    assert events.count("sent correction") == 2

    # What one correction adds: its own small workflow (the notification's has ended).
    history = await dev_env.client.get_workflow_handle(
        correction_workflow_id(parse_notification_id(public), 2)
    ).fetch_history()
    cost = history_cost(history)
    figure("correction workflow history", cost.events, "events")
    figure("correction workflow billable", cost.actions, "actions")
    description = await dev_env.client.get_workflow_handle(
        correction_workflow_id(parse_notification_id(public), 2)
    ).describe()
    assert await description.static_summary() == f"{public} · correction v2"
    assert f"{public}:correction-2:customer" in (await description.static_details() or "")


async def test_outside_the_window_the_correction_template_is_sent(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, channel: FakeTwilioChannel
) -> None:
    settings = settings_for(task_queue)
    shop = await shop_factory(language="es", last_inbound=None)
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _delivered(dev_env.client, db, settings, shop)
        fixed = await _correct(
            dev_env.client, db, settings, public, shop.admins[0].id, "We open at 11."
        )
    assert (fixed.status, fixed.method) == ("sent", "campaign")
    answer, fix = twilio.accepted(shop.customer_phone)
    assert answer["kind"] == "template" and fix["kind"] == "template"
    assert fix["content_sid"] == default_content_sid(Campaign.notification_correction, "es")
    assert "11" in fix["variables"]["1"]
    assert fix["body"].startswith("¡Hola! Una corrección a nuestra respuesta anterior:")


async def test_the_same_correction_again_is_sent_once(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, channel: FakeTwilioChannel
) -> None:
    """A client retrying (after a timeout, say): the same body, or the same correction_id,
    is the correction already taken: nothing more is recorded or sent."""
    settings = settings_for(task_queue)
    shop = await shop_factory()
    admin = shop.admins[0]
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _delivered(dev_env.client, db, settings, shop)
        await _correct(dev_env.client, db, settings, public, admin.id, "We open at 11.")
        again = await corrections.correct_notification(
            dev_env.client,
            db,
            public,
            answered_by=admin.id,
            answer={"answer": "We open at 11."},
            settings=settings,
        )
        assert (again.version, again.duplicate) == (2, True)
        await _correct(
            dev_env.client, db, settings, public, admin.id, "At 11:30.", correction_id="fix-9"
        )
        for text in ("At 11:30.", "At 11:45 (a retry keeps the first body)."):
            same = await corrections.correct_notification(
                dev_env.client,
                db,
                public,
                answered_by=admin.id,
                answer={"answer": text},
                correction_id="fix-9",
                settings=settings,
            )
            assert (same.version, same.duplicate, same.status) == (3, True, "sent")
        # The workflow id names the version: starting it again finds the first run.
        assert not await corrections.start_correction(
            dev_env.client, parse_notification_id(public), 3, settings
        )
    fixes = twilio.accepted(shop.customer_phone)[1:]
    assert len(fixes) == 2
    assert await _version_rows(db, public) == 3


async def test_a_correction_recorded_while_temporal_was_away_is_sent_by_the_sweeper(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, channel: FakeTwilioChannel
) -> None:
    settings = settings_for(task_queue)
    shop = await shop_factory()
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _delivered(dev_env.client, db, settings, shop)
        n = parse_notification_id(public)
        # The request's own start never happened (the API died, or Temporal was away).
        accepted, pending = await corrections.record_correction(
            db, n, answered_by=shop.admins[0].id, answer={"answer": "We open at 11."}
        )
        assert pending and accepted.status == "pending"
        assert await corrections.sweep_corrections(dev_env.client, db, settings, grace=_NO_GRACE)
        handle = dev_env.client.get_workflow_handle(
            correction_workflow_id(n, 2), result_type=CorrectionResult
        )
        assert (await handle.result()).status == "sent"
        assert not await corrections.sweep_corrections(
            dev_env.client, db, settings, grace=_NO_GRACE
        )
    await until(lambda: len(twilio.accepted(shop.customer_phone)) == 2)
    assert len(twilio.accepted(shop.customer_phone)) == 2


async def test_refusals_change_nothing(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, channel: FakeTwilioChannel
) -> None:
    """Not delivered → 409 naming the state; an answer the schema refuses → 422; a merchant
    user who may not answer → 403; a missing notification → 404: no version, no send, the
    Document as it was."""
    settings = settings_for(task_queue)
    shop = await shop_factory()
    stranger = (await shop_factory()).admins[0]
    admin = shop.admins[0]
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel), client_for(app) as api:
        delivered = await _delivered(dev_env.client, db, settings, shop)
        waiting = (
            await starter.request_notification(
                dev_env.client,
                db,
                type="user_question_request",
                conversation_id=shop.conversation_id,
                context={"question": "Gift wrap?"},
                settings=settings,
            )
        ).notification_id
        await until(lambda: len(twilio.accepted(admin.phone)) >= 2)
        before = await _document(db, delivered)
        sent_before = len(twilio.accepted(shop.customer_phone))

        async def post(public: str, body: dict[str, Any]) -> Any:
            return await api.post(f"/v1/notifications/{public}/correct", json=body)

        refused = await post(waiting, {"answered_by": admin.id, "answer": {"answer": "Yes."}})
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "not_delivered" and "requested" in error["message"]
        assert error["details"]["status"] == "requested"
        for bad in ({"answer": ""}, {"answer": "   "}, {"reply": "Yes."}, {"answer": 3}):
            invalid = await post(delivered, {"answered_by": admin.id, "answer": bad})
            assert invalid.status_code == 422, (bad, invalid.text)
        invalid = await post(delivered, {"answered_by": admin.id, "answer_json": "not json"})
        assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "not_json"
        for who in (stranger.id, shop.user("sales").id, 2147483000):
            forbidden = await post(delivered, {"answered_by": who, "answer": {"answer": "No."}})
            assert forbidden.status_code == 403, forbidden.text
        missing = await post("NOTIF_2147483000", {"answered_by": admin.id, "answer": {}})
        assert missing.status_code == 404
        with pytest.raises(NotificationError) as direct:
            await corrections.correct_notification(
                dev_env.client, db, waiting, answered_by=admin.id, answer={"answer": "Yes."}
            )
        assert direct.value.code is RefusalCode.not_delivered
    assert await _version_rows(db, delivered) == 0
    assert await _version_rows(db, waiting) == 0
    after = await _document(db, delivered)
    assert (after.content, after.versions) == (before.content, [])
    assert len(twilio.accepted(shop.customer_phone)) == sent_before


async def test_a_correction_waits_for_a_worker_and_survives_failed_attempts_sending_once(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, channel: FakeTwilioChannel
) -> None:
    """Recorded and started while no worker runs (they all died): the version waits, pending.
    Once a worker is back, the provider refuses the first two attempts (429): Temporal retries
    the activity and the ledger lets exactly one message through."""
    settings = settings_for(task_queue)
    shop = await shop_factory()
    async with running_worker(dev_env.client, db, task_queue, channel):
        public = await _delivered(dev_env.client, db, settings, shop)
    n = parse_notification_id(public)
    accepted = await corrections.correct_notification(
        dev_env.client,
        db,
        public,
        answered_by=shop.admins[0].id,
        answer={"answer": "We open at 11."},
        settings=settings,
    )
    assert (accepted.version, accepted.status) == (2, "pending")
    view = await starter.get_notification(db, public)
    assert view.answers[-1].delivery_status == "pending"
    channel.fail_times[shop.customer_phone] = 2
    async with running_worker(dev_env.client, db, task_queue, channel):
        handle = dev_env.client.get_workflow_handle(
            correction_workflow_id(n, 2), result_type=CorrectionResult
        )
        assert (await handle.result()).status == "sent"
    assert channel.fail_times[shop.customer_phone] == 0
    assert len(twilio.accepted(shop.customer_phone)) == 2  # the answer, the correction
    cost = history_cost(await handle.fetch_history())
    figure("correction with 2 refused attempts", cost.actions, "actions")
    view = await starter.get_notification(db, public)
    assert view.answers[-1].delivery_status == "sent"
