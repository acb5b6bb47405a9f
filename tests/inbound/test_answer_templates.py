"""An admin answers with a quick answer (``#hours``) on WhatsApp: through the signed webhook,
the dev server, a worker and the database; the customer's message read back from the strict
fake Twilio, localized by the model behind the fake OpenAI."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from sqlalchemy import select

from notifyflow.ai.openai_provider import OpenAIProvider
from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import NotificationAnswer
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.inbound import ReplyOutcome
from tests.api.conftest import client_for
from tests.fakes.openai_server import FakeAIRequest, FakeOpenAI
from tests.fixtures.fakes import fake_settings
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker
from tests.inbound.conftest import Inbound, Webhooks, inbound_settings, sent_requests, until
from tests.workflows.helpers import wait_status

HOURS = "We open Monday to Friday, 9:00 to 18:00."


def spanish(request: FakeAIRequest) -> str:
    """A stand-in model that 'translates' by tagging: the customer's words are recognisable."""
    text = request.last_user_text
    # The data block the provider puts the words in is the last one (after the conversation).
    blocks = [b.strip() for b in re.findall(r">([^<]*)<", text) if b.strip()]
    answer = blocks[-1] if blocks else text
    if request.schema_name == "LocalizedMessage":
        return json.dumps(
            {"continuation_fragment": f"(es) {answer}", "full_sentence": f"(es) {answer}"}
        )
    return f"(es) {answer}"


@pytest_asyncio.fixture
async def localizing(
    dev_env: Any,
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    openai: FakeOpenAI,
) -> AsyncIterator[Inbound]:
    """The inbound stack with the OpenAI provider (on the fake OpenAI) localizing answers."""
    openai.set_responder(spanish)
    ai = OpenAIProvider(fake_settings(openai=openai))
    settings = inbound_settings(task_queue)
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    try:
        async with running_worker(dev_env.client, db, task_queue, channel, ai=ai):
            async with client_for(app) as http:
                yield Inbound(http, Webhooks(http), dev_env.client, db, settings)
    finally:
        await ai.aclose()


async def _template(inbound: Inbound, shop: Shop, code: str, answer: str) -> None:
    response = await inbound.http.post(
        f"/v1/merchants/{shop.merchant_id}/answer-templates",
        json={"code": code, "type": "user_question_request", "answer": {"answer": answer}},
    )
    assert response.status_code == 201, response.text


async def _answers(db: SessionFactory, public: str) -> list[NotificationAnswer]:
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationAnswer)
                    .where(NotificationAnswer.notification_id == parse_notification_id(public))
                    .order_by(NotificationAnswer.id)
                )
            ).all()
        )


async def test_an_admin_answers_hash_hours_and_the_customer_gets_it_localized(
    localizing: Inbound,
    db: SessionFactory,
    channel: FakeTwilioChannel,
    openai: FakeOpenAI,
    shop_factory: Any,
) -> None:
    # The customer has not written for days: the answer goes out as the approved template,
    # with the localized words as its variable.
    shop: Shop = await shop_factory(language="es", last_inbound=None)
    await _template(localizing, shop, "hours", HOURS)
    public = await localizing.ask(shop, "¿Abren el domingo?")
    admin = shop.admins[0]
    await sent_requests(db, public, 2)

    _, sid = await localizing.twilio.message(sender=admin.phone, body="#hours")
    decision = await localizing.reply_decision(sid)
    assert decision.outcome is ReplyOutcome.accepted, decision
    assert decision.notification_id == parse_notification_id(public)

    row = await wait_status(db, public, {"delivered"})
    assert row.answered_by == admin.id and row.delivery_method == "campaign"
    (to_customer,) = channel.to(shop.customer_phone)
    assert to_customer.kind == "template"
    assert to_customer.variables is not None
    assert f"(es) {HOURS}" in " ".join(to_customer.variables.values())
    # The template's words were localized; no model was asked to read "#hours".
    assert {e["schema_name"] for e in openai.ledger} == {"LocalizedMessage"}
    (answer,) = await _answers(db, public)
    assert answer.accepted and answer.source == "whatsapp" and answer.template_code == "hours"
    assert json.loads(answer.answer_text) == {"answer": HOURS}
    thanks = [s.body for s in channel.to(admin.phone) if s.kind == "text"]
    assert thanks == [
        f"Thanks — your answer to {public} was accepted and is on its way to the customer."
    ]


async def test_an_unknown_code_gets_the_codes_there_are_and_a_mention_picks_the_notification(
    localizing: Inbound, db: SessionFactory, channel: FakeTwilioChannel, shop_factory: Any
) -> None:
    shop: Shop = await shop_factory(language="en")
    await _template(localizing, shop, "hours", HOURS)
    await _template(localizing, shop, "returns", "Returns are free within 30 days.")
    first = await localizing.ask(shop, "Do you open on Sundays?")
    second = await localizing.ask(shop, "Can I return a gift?")
    await sent_requests(db, first, 2)
    await sent_requests(db, second, 2)
    admin = shop.admins[1]

    # Two open: the mention says which; the code is not one of the shop's.
    _, sid = await localizing.twilio.message(sender=admin.phone, body=f"{first}: #opening")
    decision = await localizing.reply_decision(sid)
    assert decision.outcome is ReplyOutcome.refused and decision.reason_code == "unknown_template"

    async def replied() -> list[str]:
        return [s.body for s in channel.to(admin.phone) if s.kind == "text"]

    (reply,) = await until(replied, what="the reply to the admin")
    assert reply == (
        f"There is no quick answer #opening for {first}. Quick answers for it: #hours, "
        "#returns. Or reply with the answer in your own words."
    )
    (refused,) = await _answers(db, first)
    assert not refused.accepted and refused.template_code == "opening"

    # Upper case is forgiven; the mention picks the second notification.
    _, sid = await localizing.twilio.message(sender=admin.phone, body=f"#Returns {second}")
    decision = await localizing.reply_decision(sid)
    assert decision.outcome is ReplyOutcome.accepted, decision
    assert decision.notification_id == parse_notification_id(second)
    await wait_status(db, second, {"delivered"})
    (to_customer,) = channel.to(shop.customer_phone)
    assert "(es) Returns are free within 30 days." in to_customer.body
    assert (await wait_status(db, first, {"requested"})).answered_by is None
