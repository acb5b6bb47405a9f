"""Black box: a fresh deployment (``notifyflow db upgrade`` and nothing else) serves both seed
flows end to end. Everything is made over HTTP; what people received is read from the fake
Twilio; the product's database is only read for the Content SIDs it provisioned.

The first test of this module is the first notification the fresh database ever sees (the
session's stack starts here: ``test_deployment`` sorts before ``test_faults``).
"""

from __future__ import annotations

import time

from tests.e2e.conftest import Figures
from tests.e2e.flows import answer, request, settle, wait_asked
from tests.e2e.stack import (
    E2EStack,
    accepted,
    closure_notices,
    open_shop,
    words_of,
)

QUESTION = "Do you ship to the Canary Islands?"
ANSWER = "Yes, we ship there in 5 to 7 working days."


async def test_a_fresh_deployment_notifies_and_answers_with_no_other_step(
    stack: E2EStack, figures: Figures
) -> None:
    """Finding 1: after `db upgrade`, a merchant made over HTTP is served at once — the admins
    are asked and the answer reaches the customer — with no seeding of templates."""
    async with stack.http() as http:
        shop = await open_shop(http, admins=2)
        started = time.monotonic()
        public = await request(http, shop, "user_question_request", {"question": QUESTION})
        asked_at = await wait_asked(stack, http, public, shop.admins)
        figures.add("request → every admin asked", asked_at - started, "s")

        started = time.monotonic()
        await answer(http, public, shop.admins[0], {"answer": ANSWER})
        body = await settle(stack, http, public)
        figures.add("answer → settled", time.monotonic() - started, "s")

    assert body["status"] == "delivered", body
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert "5 to 7 working days" in words_of(reply)


async def test_a_question_answered_inside_the_window_goes_direct(stack: E2EStack) -> None:
    async with stack.http() as http:
        shop = await open_shop(http, admins=2, customer_wrote="now")
        public = await request(http, shop, "user_question_request", {"question": QUESTION})
        await wait_asked(stack, http, public, shop.admins)

        request_sid = stack.templates[("merchant_user_question_request", "en")]
        for admin in shop.admins:
            (sent,) = stack.requests_to(admin.phone, public)
            assert sent["content_sid"] == request_sid
            assert sent["variables"] == {"1": public, "2": QUESTION}
            assert public in sent["body"] and QUESTION in sent["body"]  # rendered by the fake
        instructions = await stack.instructions(public)
        assert len(instructions) == len(shop.admins), instructions
        for text in instructions:
            assert public in text and QUESTION in text and "AnswerNotificationTool" in text

        view = (await http.get(f"/v1/notifications/{public}")).json()
        assert view["status"] == "requested"
        assert sorted(r["merchant_user_id"] for r in view["recipients"]) == sorted(
            a.id for a in shop.admins
        )

        answerer, other = shop.admins
        await answer(http, public, answerer, {"answer": ANSWER})
        body = await settle(stack, http, public)

        documents = (
            await http.get(f"/v1/merchants/{shop.merchant_id}/documents?category=UserQuestion")
        ).json()["items"]

    assert body["status"] == "delivered", body
    assert body["delivery"]["method"] == "direct", body["delivery"]
    assert [a["accepted"] for a in body["answers"]] == [True]
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert reply["kind"] == "text" and "5 to 7 working days" in reply["body"], reply
    # Each admin was asked once; the other one was told it is closed, the answerer was not.
    for admin in shop.admins:
        assert len(stack.requests_to(admin.phone, public)) == 1
    assert len(closure_notices(stack.twilio, other.phone, public)) == 1
    assert closure_notices(stack.twilio, answerer.phone, public) == []
    # The question and its answer joined the merchant's knowledge base.
    (document,) = [d for d in documents if d["title"] == QUESTION]
    assert "5 to 7 working days" in document["content"]


async def test_a_question_answered_outside_the_window_goes_as_the_answer_campaign(
    stack: E2EStack,
) -> None:
    async with stack.http() as http:
        shop = await open_shop(http, admins=2, customer_wrote="long ago")
        # As real Twilio would: a free-form message to this customer is refused (63016).
        stack.twilio.close_window(shop.customer_phone)
        public = await request(http, shop, "user_question_request", {"question": QUESTION})
        await wait_asked(stack, http, public, shop.admins)
        answerer, other = shop.admins[1], shop.admins[0]
        await answer(http, public, answerer, {"answer": ANSWER})
        body = await settle(stack, http, public)
        history = (await http.get(f"/v1/conversations/{shop.conversation_id}/messages")).json()[
            "items"
        ]

    assert body["status"] == "delivered", body
    assert body["delivery"]["method"] == "campaign", body["delivery"]
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert reply["kind"] == "template", reply
    assert reply["content_sid"] == stack.templates[("merchant_user_question_answer", "en")]
    assert "5 to 7 working days" in words_of(reply)
    # The campaign send shows in the customer's history, as the agent will read it.
    assert any((m.get("whatsapp_payload") or {}).get("type") == "template" for m in history)
    assert len(closure_notices(stack.twilio, other.phone, public)) == 1
    for admin in shop.admins:
        assert len(stack.requests_to(admin.phone, public)) == 1


async def test_a_support_request_goes_to_the_classified_team(stack: E2EStack) -> None:
    reason = "My jacket arrived torn and I want my money back; please pass this to returns."
    notes = "internal: refund approved, ticket R-5521"
    async with stack.http() as http:
        shop = await open_shop(
            http,
            admins=2,
            user_types=("sales", "returns"),
            classifications=("sales", "returns", "technical"),
        )
        public = await request(
            http, shop, "user_support_request", {"support_request_reason": reason}
        )
        returns = shop.user("returns")
        await wait_asked(stack, http, public, [returns])
        (sent,) = stack.requests_to(returns.phone, public)
        assert sent["content_sid"] == stack.templates[("merchant_user_override_request", "en")]
        view = (await http.get(f"/v1/notifications/{public}")).json()
        assert [r["merchant_user_id"] for r in view["recipients"]] == [returns.id], view

        await answer(
            http,
            public,
            returns,
            {"agent_response_to_customer": "We will refund you today.", "resolution_notes": notes},
        )
        body = await settle(stack, http, public)

    assert body["status"] == "delivered", body
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert "refund you today" in words_of(reply)
    # Nobody else was asked, and resolution notes never left the database.
    for person in [*shop.admins, shop.user("sales")]:
        assert stack.requests_to(person.phone, public) == []
    assert all("R-5521" not in words_of(m) for m in stack.twilio.accepted())
    assert all("R-5521" not in r.prompt_text for r in stack.openai.requests())


async def test_a_support_request_with_no_such_team_falls_back_to_the_admins(
    stack: E2EStack,
) -> None:
    reason = "The app crashes at setup; this looks like a technical problem."
    async with stack.http() as http:
        shop = await open_shop(
            http,
            admins=2,
            user_types=("sales",),
            classifications=("sales", "returns", "technical"),
            customer_wrote=None,
        )
        public = await request(
            http, shop, "user_support_request", {"support_request_reason": reason}
        )
        await wait_asked(stack, http, public, shop.admins)
        answerer, other = shop.admins
        await answer(
            http, public, answerer, {"agent_response_to_customer": "Please update the app."}
        )
        body = await settle(stack, http, public)

    assert body["status"] == "delivered", body
    assert body["delivery"]["method"] == "campaign", body["delivery"]
    assert stack.requests_to(shop.user("sales").phone, public) == []
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert reply["content_sid"] == stack.templates[("customer_support_response", "en")]
    assert "update the app" in words_of(reply)
    assert len(closure_notices(stack.twilio, other.phone, public)) == 1
