"""End to end on the dev server, PostgreSQL, the real twilio and openai SDKs against the fake
servers: what each admin and the customer received, the Document, the statuses."""

from __future__ import annotations

import json

from notifyflow import starter
from notifyflow.ai.openai_provider import OpenAIProvider
from notifyflow.config import Settings
from notifyflow.db.tables import Document
from notifyflow.models.notification import closure_notice
from notifyflow.providers import build_channel
from tests.fakes.openai_server import FakeAIRequest, FakeOpenAI
from tests.fakes.twilio_server import FakeTwilio
from tests.fixtures.lifecycle import running_worker
from tests.workflows.helpers import result, until, wait_status


def spanish_llm(request: FakeAIRequest) -> str:
    """A stand-in model: routes refunds to returns and 'translates' by tagging the text."""
    name = request.schema_name or ""
    text = request.last_user_text
    if name == "SupportClassification":
        return json.dumps({"user_type": "returns", "readable_type": "Returns"})
    if name == "LocalizedMessage":
        answer = text.split(">", 1)[-1].split("<", 1)[0].strip() if "<" in text else text
        return json.dumps(
            {"continuation_fragment": f"(es) {answer}", "full_sentence": f"(es) {answer}."}
        )
    # Reply composition (plain text).
    return "¡Hola! Nuestro equipo respondió: ya está en camino."


def _settings(provider_settings: Settings, task_queue: str) -> Settings:
    return provider_settings.model_copy(update={"temporal_task_queue": task_queue})


async def test_question_end_to_end_through_twilio_and_openai(
    dev_env,
    db,
    task_queue,
    shop_factory,
    twilio: FakeTwilio,
    openai: FakeOpenAI,
    provider_settings: Settings,
) -> None:
    openai.set_responder(spanish_llm)
    settings = _settings(provider_settings, task_queue)
    shop = await shop_factory(language="es")
    channel = build_channel(settings)
    ai = OpenAIProvider(settings)
    try:
        async with running_worker(dev_env.client, db, task_queue, channel, ai=ai):
            view = await starter.request_notification(
                dev_env.client,
                db,
                type="user_question_request",
                conversation_id=shop.conversation_id,
                context={"question": "¿Abren el domingo?"},
                settings=settings,
            )
            public = view.notification_id
            await until(lambda: all(twilio.accepted(a.phone) for a in shop.admins))
            for admin in shop.admins:
                (request,) = twilio.accepted(admin.phone)
                assert request["kind"] == "template" and request["content_sid"].startswith("HX")
                assert request["variables"] == {"1": public, "2": "¿Abren el domingo?"}
            await starter.answer_notification(
                dev_env.client,
                db,
                public,
                answered_by=shop.admins[1].id,
                answer={"answer": "Yes, 10am to 2pm."},
            )
            outcome = await result(dev_env.client, public)
    finally:
        await channel.aclose()  # type: ignore[attr-defined]
        await ai.aclose()
    assert outcome.status == "delivered"
    row = await wait_status(db, public, {"delivered"})
    # The customer wrote just now: one free-form message composed by the model.
    (sent,) = twilio.accepted(shop.customer_phone)
    assert sent["kind"] == "text" and sent["body"].startswith("¡Hola!")
    # The admin who did not answer got the closure notice; the answerer got nothing more.
    assert twilio.accepted(shop.admins[0].phone)[-1]["variables"] == {"1": closure_notice(public)}
    assert len(twilio.accepted(shop.admins[1].phone)) == 1
    async with db() as session:
        doc = await session.get(Document, row.document_id)
        assert doc is not None and doc.content == "Yes, 10am to 2pm."
    # Models as configured; the classifier is not needed for a question.
    assert {e["model"] for e in openai.ledger} == {"gpt-4.1-mini"}


async def test_support_end_to_end_template_outside_the_window(
    dev_env,
    db,
    task_queue,
    shop_factory,
    twilio: FakeTwilio,
    openai: FakeOpenAI,
    provider_settings: Settings,
) -> None:
    openai.set_responder(spanish_llm)
    settings = _settings(provider_settings, task_queue)
    shop = await shop_factory(language="es", last_inbound=None)
    channel = build_channel(settings)
    ai = OpenAIProvider(settings)
    returns = shop.user("returns")
    try:
        async with running_worker(dev_env.client, db, task_queue, channel, ai=ai):
            view = await starter.request_notification(
                dev_env.client,
                db,
                type="user_support_request",
                conversation_id=shop.conversation_id,
                context={"support_request_reason": "Llegó roto, quiero un reembolso"},
                settings=settings,
            )
            public = view.notification_id
            await until(lambda: bool(twilio.accepted(returns.phone)))
            assert not any(twilio.accepted(a.phone) for a in shop.admins)
            await starter.answer_notification(
                dev_env.client,
                db,
                public,
                answered_by=returns.id,
                answer={
                    "agent_response_to_customer": "Refund issued today.",
                    "resolution_notes": "INTERNAL-ONLY order 991",
                },
            )
            outcome = await result(dev_env.client, public)
    finally:
        await channel.aclose()  # type: ignore[attr-defined]
        await ai.aclose()
    assert outcome.status == "delivered"
    row = await wait_status(db, public, {"delivered"})
    assert row.delivery_method == "campaign"
    (sent,) = twilio.accepted(shop.customer_phone)
    assert sent["kind"] == "template"
    assert sent["variables"] == {"1": "(es) Refund issued today."}
    # Classification used the classify model with its 100-token limit.
    classify = [e for e in openai.ledger if e["schema_name"] == "SupportClassification"]
    assert classify and classify[0]["model"] == "gpt-4.1" and classify[0]["max_tokens"] == 100
    # Resolution notes reached neither a person nor a model.
    assert all("INTERNAL-ONLY" not in json.dumps(e["body"], default=str) for e in openai.ledger)
    assert all("INTERNAL-ONLY" not in json.dumps(m, default=str) for m in twilio.ledger)
    view = await starter.get_notification(db, public)
    assert view.context["support_request_type"] == "Returns"
    assert [r.merchant_user_id for r in view.recipients] == [returns.id]


async def test_a_refused_template_variable_is_shortened_and_sent_once(
    dev_env, db, task_queue, shop_factory, twilio: FakeTwilio, provider_settings: Settings
) -> None:
    """Twilio's copy of the template is stricter than ours (63021: over 1,024 characters):
    the answer goes out once more with a plain, shorter variable, and only once."""
    settings = _settings(provider_settings, task_queue).model_copy(update={"ai": "offline"})
    shop = await shop_factory(last_inbound=None)
    channel = build_channel(settings)
    long_answer = "We ship everywhere. " + "Details follow in a long paragraph. " * 40
    twilio.fail_next(400, 63021, "too long", to=shop.customer_phone, kind="template")
    try:
        async with running_worker(dev_env.client, db, task_queue, channel):
            view = await starter.request_notification(
                dev_env.client,
                db,
                type="user_question_request",
                conversation_id=shop.conversation_id,
                context={"question": "Shipping?"},
                settings=settings,
            )
            await until(lambda: bool(twilio.accepted(shop.admins[0].phone)))
            await starter.answer_notification(
                dev_env.client,
                db,
                view.notification_id,
                answered_by=shop.admins[0].id,
                answer={"answer": long_answer},
            )
            outcome = await result(dev_env.client, view.notification_id)
    finally:
        await channel.aclose()  # type: ignore[attr-defined]
    assert outcome.status == "delivered"
    (sent,) = twilio.accepted(shop.customer_phone)
    assert sent["kind"] == "template" and len(sent["variables"]["1"]) <= 300
    assert sent["variables"]["1"].startswith("we ship everywhere.")
