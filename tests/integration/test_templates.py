"""Which template reaches whom, by Content SID and by the body the fake Twilio rendered.

Everything goes through the public API (merchants, users, conversations, templates,
notifications, answers) and the real worker with the real ``twilio`` SDK against the strict fake
Twilio, which only sends approved templates (21655 otherwise) and renders them. Asserted per
person, from the fake's ledger:

- the customer's answer template follows the language chain ``pt-BR → pt → merchant default →
  en``, a merchant's own template (``PUT /v1/campaigns/{campaign}/templates/{language}`` with
  ``merchant_id``) winning over the product's in the same language;
- the admins' request template is in the merchant's default language, else ``en``;
- the closure notice is the contract text free-form to an admin whose own 24 h window is open,
  and the ``notification_closed`` template carrying that text to one whose window is closed.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio

from notifyflow.ai.offline import OfflineProvider, as_fragment
from notifyflow.api.app import create_app
from notifyflow.channels.twilio_channel import TwilioChannel
from notifyflow.db.seed import DEFAULT_TEMPLATES, default_content_sid
from notifyflow.db.session import SessionFactory
from notifyflow.models.notification import Campaign, closure_notice
from notifyflow.outreach.templates import clear_template_cache
from tests.api.conftest import client_for
from tests.fakes.twilio_server import FakeTwilio
from tests.fixtures.database import unique_phone
from tests.fixtures.fakes import fake_settings
from tests.fixtures.ledger import settle
from tests.fixtures.lifecycle import running_worker

ANSWER_CAMPAIGN = Campaign.merchant_user_question_answer
QUESTION = "Do you have the blue kettle in stock?"
ANSWER = "Yes,   two left;\nwe can hold one for you."


def new_sid() -> str:
    return "HX" + secrets.token_hex(16)


def rendered(body: str, *values: str) -> str:
    for n, value in enumerate(values, start=1):
        body = body.replace(f"{{{{{n}}}}}", value)
    return body


def default(campaign: Campaign, language: str) -> tuple[str, str]:
    template = DEFAULT_TEMPLATES[(campaign, language)]
    return template.content_sid, template.body


@dataclass
class Desk:
    api: httpx.AsyncClient
    twilio: FakeTwilio
    client: Any

    async def put_template(
        self, campaign: Campaign, language: str, body: str, merchant_id: int | None = None
    ) -> str:
        sid = new_sid()
        payload: dict[str, Any] = {"content_sid": sid, "body": body}
        if merchant_id is not None:
            payload["merchant_id"] = merchant_id
        answer = await self.api.put(f"/v1/campaigns/{campaign}/templates/{language}", json=payload)
        assert answer.status_code == 200, answer.text
        # Approved at Twilio, as an operator does before using a Content SID.
        self.twilio.register_template(sid, body, campaign.value)
        return sid

    async def merchant(self, default_language: str, admins: int = 2) -> dict[str, Any]:
        answer = await self.api.post(
            "/v1/merchants",
            json={
                "name": f"Templates {secrets.token_hex(3)}",
                "whatsapp_sender": f"whatsapp:{unique_phone()}",
                "default_language": default_language,
            },
        )
        assert answer.status_code == 201, answer.text
        merchant: dict[str, Any] = answer.json()
        merchant["admins"] = []
        for n in range(admins):
            user = await self.api.post(
                f"/v1/merchants/{merchant['id']}/users",
                json={"name": f"Admin {n}", "phone": unique_phone(), "user_type": "admin"},
            )
            assert user.status_code == 201, user.text
            merchant["admins"].append(user.json())
        return merchant

    async def conversation(self, merchant: dict[str, Any], language: str, phone: str) -> int:
        answer = await self.api.post(
            "/v1/conversations",
            json={
                "merchant_id": merchant["id"],
                "channel": "whatsapp",
                "customer_phone": phone,
                "language": language,
            },
        )
        assert answer.status_code == 201, answer.text
        conversation_id: int = answer.json()["id"]
        return conversation_id

    async def ask_and_answer(self, conversation_id: int, answered_by: int) -> str:
        answer = await self.api.post(
            "/v1/notifications",
            json={
                "type": "user_question_request",
                "conversation_id": conversation_id,
                "context": {"question": QUESTION},
            },
        )
        assert answer.status_code == 202, answer.text
        public: str = answer.json()["notification_id"]
        accepted = await self.api.post(
            f"/v1/notifications/{public}/answer",
            json={"answered_by": answered_by, "answer": {"answer": ANSWER}},
        )
        assert accepted.status_code == 200, accepted.text
        return public

    async def delivered(self, *publics: str) -> None:
        assert await settle(self.client, publics, self.twilio) == []
        for public in publics:
            body = (await self.api.get(f"/v1/notifications/{public}")).json()
            assert body["status"] == "delivered", body


@pytest_asyncio.fixture
async def desk(
    dev_env: Any, db: SessionFactory, task_queue: str, twilio: FakeTwilio
) -> AsyncIterator[Desk]:
    clear_template_cache()
    settings = fake_settings(twilio).model_copy(update={"temporal_task_queue": task_queue})
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    whatsapp = TwilioChannel(settings)
    try:
        async with running_worker(dev_env.client, db, task_queue, whatsapp, OfflineProvider()):
            async with client_for(app) as api:
                yield Desk(api, twilio, dev_env.client)
    finally:
        await whatsapp.close()


async def test_answer_template_follows_the_language_chain_and_merchant_overrides(
    desk: Desk,
) -> None:
    """Each customer never wrote (window closed): the answer goes as a template, the one the
    chain picks for the conversation's language."""
    pt_body = "Olá! Sobre a sua pergunta: {{1}}\n\nResponda se precisar de mais alguma coisa."
    pt_sid = await desk.put_template(ANSWER_CAMPAIGN, "pt", pt_body)

    own_pt_br = await desk.merchant("es")
    own_body = "Oi! A equipe da loja respondeu: {{1}}\n\nObrigado!"
    own_sid = await desk.put_template(ANSWER_CAMPAIGN, "pt-BR", own_body, own_pt_br["id"])
    global_pt = await desk.merchant("es")  # pt-BR → (no pt-BR) → pt, the product's
    merchant_default = await desk.merchant("es")  # de → (none) → es, the merchant's default
    english = await desk.merchant("fr")  # de → fr (none) → en
    own_en = await desk.merchant("en")
    own_en_body = "Hi from the shop! About your question: {{1}}\n\nCheers."
    own_en_sid = await desk.put_template(ANSWER_CAMPAIGN, "en", own_en_body, own_en["id"])

    es_sid, es_body = default(ANSWER_CAMPAIGN, "es")
    en_sid, en_body = default(ANSWER_CAMPAIGN, "en")
    cases = [
        (own_pt_br, "pt-BR", own_sid, own_body),
        (global_pt, "pt-BR", pt_sid, pt_body),
        (merchant_default, "de", es_sid, es_body),
        (english, "de", en_sid, en_body),
        (own_en, "de", own_en_sid, own_en_body),
    ]
    runs = []
    for merchant, language, sid, body in cases:
        customer = unique_phone()
        conversation = await desk.conversation(merchant, language, customer)
        public = await desk.ask_and_answer(conversation, merchant["admins"][0]["id"])
        runs.append((public, merchant, customer, sid, body))
    await desk.delivered(*(run[0] for run in runs))

    fragment = as_fragment(ANSWER)
    for public, merchant, customer, sid, body in runs:
        (message,) = desk.twilio.accepted(to=customer)
        assert (message["kind"], message["content_sid"]) == ("template", sid), public
        assert message["variables"] == {"1": fragment}
        assert message["body"] == rendered(body, fragment)
        # The admins were asked in the merchant's default language, or English.
        language = merchant["default_language"] if merchant["default_language"] != "fr" else "en"
        request_sid, request_body = default(Campaign.merchant_user_question_request, language)
        for admin in merchant["admins"]:
            request = desk.twilio.accepted(to=admin["phone"])[0]
            assert request["content_sid"] == request_sid
            assert request["body"] == rendered(request_body, public, QUESTION)


async def test_closure_notice_free_form_or_template_by_each_admins_own_window(
    desk: Desk,
) -> None:
    merchant = await desk.merchant("en", admins=3)
    answerer, open_admin, closed_admin = merchant["admins"]
    # The second admin wrote to the business on WhatsApp just now: their window is open.
    own = await desk.conversation(merchant, "en", open_admin["phone"])
    wrote = await desk.api.post(
        f"/v1/conversations/{own}/messages", json={"role": "user", "content": "I'm around"}
    )
    assert wrote.status_code == 201, wrote.text
    customer = unique_phone()
    conversation = await desk.conversation(merchant, "en", customer)
    public = await desk.ask_and_answer(conversation, answerer["id"])
    await desk.delivered(public)

    notice = closure_notice(public)
    request_sid, _ = default(Campaign.merchant_user_question_request, "en")
    closed_sid, closed_body = default(Campaign.notification_closed, "en")
    # The answerer: asked once, told nothing more.
    assert [m["content_sid"] for m in desk.twilio.accepted(to=answerer["phone"])] == [request_sid]
    # Window open: the contract text, free-form, as the whole body.
    request, closure = desk.twilio.accepted(to=open_admin["phone"])
    assert request["content_sid"] == request_sid
    assert (closure["kind"], closure["body"], closure["content_sid"]) == ("text", notice, None)
    # Window closed: the closure template, its one variable the contract text.
    request, closure = desk.twilio.accepted(to=closed_admin["phone"])
    assert request["content_sid"] == request_sid
    assert (closure["kind"], closure["content_sid"]) == ("template", closed_sid)
    assert closure["variables"] == {"1": notice}
    assert closure["body"] == rendered(closed_body, notice)
    assert closed_sid == default_content_sid(Campaign.notification_closed, "en")
