"""Twilio misbehaves (the fake, through the real TwilioChannel): rate limits and 5xx are
retried without a second message, even when Twilio took the message and the answer was lost;
63016 falls back to the template; a permanent refusal ends in ``delivery_failed`` with the
reason, and the admin who answered is told.

The scenarios of a test run at once, each on its own merchant; every fault is aimed at one
phone."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from notifyflow import starter
from notifyflow.db.seed import default_content_sid
from notifyflow.db.tables import Message
from notifyflow.models.notification import Campaign
from tests.faults.harness import (
    FaultTwilio,
    Stack,
    customer_words,
    drifting_responder,
    ledger_row,
    ledger_rows,
    run_concurrently,
    scenario,
)
from tests.fixtures.database import MadeMerchant

ANSWER = "Yes, we ship to the Canary Islands; it takes about 5 days."
LOCALIZED = f"(localized) {customer_words(ANSWER)}"

Inject = Callable[[FaultTwilio, str], object]

# name -> (inject at the customer's phone, Delivery attempts of the answer afterwards)
RETRIED: dict[str, tuple[Inject, int]] = {
    "429 rate limited twice (Retry-After)": (
        lambda t, to: t.fail_next(429, 20429, "Too Many Requests", to=to, times=2, retry_after=1),
        3,
    ),
    "63018 rate limit": (lambda t, to: t.fail_next(429, 63018, "rate limit", to=to), 2),
    "500 before acceptance": (lambda t, to: t.fail_next(500, 20500, to=to), 2),
    "503 before acceptance": (lambda t, to: t.fail_next(503, 20503, to=to), 2),
    "200 with an unreadable body, not accepted": (lambda t, to: t.garbage_next(to=to), 2),
    "client timeout, not accepted": (lambda t, to: t.timeout_next(5.0, to=to), 2),
    "500 after acceptance": (lambda t, to: t.accept_then_fail_next("500", to=to), 1),
    "unreadable body after acceptance": (
        lambda t, to: t.accept_then_fail_next("garbage", to=to),
        1,
    ),
    "client timeout after acceptance": (
        lambda t, to: t.accept_then_fail_next("timeout", to=to, delay=5.0),
        1,
    ),
}


async def _asked(stack: Stack) -> tuple[MadeMerchant, str]:
    merchant = await stack.merchant()
    public = await stack.request(merchant)
    await stack.wait_waiting(public)
    return merchant, public


async def _retried(stack: Stack, name: str) -> None:
    inject, attempts = RETRIED[name]
    merchant, public = await _asked(stack)
    customer = merchant.customer_phone or ""
    async with scenario(f"twilio {name}") as case:
        inject(stack.twilio, customer)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        (message,) = stack.twilio.accepted(to=customer)
        assert (message["kind"], message["body"]) == ("text", LOCALIZED)
        row = await ledger_row(stack, public, "answer", customer)
        assert (row.status, row.provider_message_id, row.attempts) == (
            "sent",
            message["sid"],
            attempts,
        )
        if attempts == 1:
            # Accepted, answer lost: the retry asked Twilio instead of sending again.
            assert stack.twilio.listed(customer) >= 1


async def test_retried_answer_reaches_the_customer_once(make_stack) -> None:
    stack: Stack = await make_stack()
    await run_concurrently({name: (lambda name=name: _retried(stack, name)) for name in RETRIED})
    assert stack.twilio.pending_faults == 0


async def test_rate_limited_request_still_reaches_every_admin(make_stack) -> None:
    stack: Stack = await make_stack()
    merchant = await stack.merchant()
    first = merchant.phones[merchant.admin_ids[0]]
    async with scenario("twilio 429 on a request to an admin") as case:
        stack.twilio.fail_next(429, 20429, "Too Many Requests", to=first, retry_after=1)
        public = await stack.request(merchant)
        await stack.wait_waiting(public)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        assert (await stack.outcome(public)).status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        for admin_id in merchant.admin_ids:
            row = await ledger_row(stack, public, "request", merchant.phones[admin_id])
            assert row.status == "sent"


async def test_window_closed_falls_back_to_the_template(make_stack) -> None:
    stack: Stack = await make_stack()
    merchant, public = await _asked(stack)
    customer = merchant.customer_phone or ""
    async with scenario("twilio 63016 window closed") as case:
        stack.twilio.close_window(customer)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        outcome = await stack.outcome(public)
        assert (outcome.status.value, outcome.delivery_method) == ("delivered", "campaign")
        await case.judge(stack, {public: "delivered"}, [merchant])
        assert stack.twilio.accepted(to=customer, kind="text") == []
        (template,) = stack.twilio.accepted(to=customer, kind="template")
        assert template["variables"] == {"1": LOCALIZED}
        # The answer campaign in the customer's language, rendered by the fake.
        assert template["content_sid"] == default_content_sid(
            Campaign.merchant_user_question_answer, "en"
        )
        assert template["body"] == (
            f"Hello! Following up on your question: {LOCALIZED}\n\n"
            "Reply to this message if there is anything else we can help with."
        )
        rows = await ledger_rows(stack, public, "answer", customer)
        assert sorted((r.method, r.status, r.error_code) for r in rows) == [
            ("campaign", "sent", None),
            ("direct", "failed", "63016"),
        ]


async def _refused(stack: Stack, code: int, window_open: bool) -> None:
    merchant, public = await _asked(stack)
    customer = merchant.customer_phone or ""
    answerer = merchant.admin_ids[0]
    path = "text" if window_open else "template"
    async with scenario(f"twilio {code} permanent ({path})") as case:
        if not window_open:
            stack.twilio.close_window(customer)
        stack.twilio.fail_next(400, code, "refused for good", to=customer, kind=path)
        await stack.answer(public, answerer, ANSWER)
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivery_failed"
        assert outcome.reason is not None and outcome.reason.startswith(f"{code}:")
        # The ledger verdict asks for the closure notice to the other admin and, to the
        # admin who answered, one notice that the customer could not be reached.
        await case.judge(stack, {public: "delivery_failed"}, [merchant])
        assert stack.twilio.accepted(to=customer) == []
        view = await starter.get_notification(stack.db, public)
        assert view.delivery.failure_reason == outcome.reason
        (notice,) = [
            m
            for m in stack.twilio.accepted(to=merchant.phones[answerer])
            if "could not be delivered" in m["body"]
        ]
        assert outcome.reason in notice["body"]


async def test_permanent_refusal_ends_delivery_failed_with_the_reason(make_stack) -> None:
    stack: Stack = await make_stack()
    await run_concurrently(
        {
            f"{code} {path}": (lambda code=code, path=path: _refused(stack, code, path == "text"))
            for code in (63005, 63014)
            for path in ("text", "template")
        }
    )


async def test_permanently_refused_admin_does_not_stop_the_others(make_stack) -> None:
    stack: Stack = await make_stack()
    merchant = await stack.merchant()
    blocked = merchant.phones[merchant.admin_ids[0]]
    async with scenario("twilio 63005 on one admin's request") as case:
        stack.twilio.fail_next(400, 63005, "not a WhatsApp user", to=blocked)
        public = await stack.request(merchant)
        await stack.wait_waiting(public)
        await stack.answer(public, merchant.admin_ids[1], ANSWER)
        assert (await stack.outcome(public)).status.value == "delivered"
        other = merchant.phones[merchant.admin_ids[1]]
        # Only the other admin can have been asked; the blocked one still hears it is closed.
        await case.judge(stack, {public: "delivered"}, [merchant], asked={public: {other}})
        refused = await ledger_row(stack, public, "request", blocked)
        assert (refused.status, refused.error_code) == ("failed", "63005")
        assert (await ledger_row(stack, public, "request", other)).status == "sent"
        assert [m["body"] for m in stack.twilio.accepted(to=blocked)] == [
            "Update on a customer request:\n\n"
            f"Notification {public} has been answered and is now closed.\n\n"
            "No further action is needed from you."
        ]


async def test_answer_taken_then_lost_is_not_sent_again_when_the_model_rewords_it(
    make_stack,
) -> None:
    """Twilio takes the customer's message and answers 500. The retry composes the reply
    again, and a real model (temperature > 0) words it differently: the ledger must still see
    that the customer already has the answer."""
    stack: Stack = await make_stack()
    stack.openai.set_responder(drifting_responder())
    merchant, public = await _asked(stack)
    customer = merchant.customer_phone or ""
    async with scenario("twilio 500 after acceptance, reply reworded on retry") as case:
        stack.twilio.accept_then_fail_next("500", to=customer)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        assert (await stack.outcome(public)).status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        assert len(stack.twilio.accepted(to=customer)) == 1


async def test_answer_taken_then_lost_is_written_to_the_customers_conversation(
    make_stack,
) -> None:
    """Twilio takes the answer and the response is lost; the retry finds the message with
    ``find_accepted`` and does not send it again. The customer's conversation (the agent's
    history) must still show the answer the customer received, as it does for any send."""
    stack: Stack = await make_stack()
    merchant, public = await _asked(stack)
    customer = merchant.customer_phone or ""
    async with scenario("twilio 500 after acceptance, conversation history") as case:
        stack.twilio.accept_then_fail_next("500", to=customer)
        await stack.answer(public, merchant.admin_ids[0], ANSWER)
        assert (await stack.outcome(public)).status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        (message,) = stack.twilio.accepted(to=customer)
        row = await ledger_row(stack, public, "answer", customer)
        assert (row.attempts, row.provider_message_id) == (1, message["sid"])
        async with stack.db() as session:
            history = [
                m
                for m in (
                    await session.scalars(
                        select(Message).where(
                            Message.conversation_id == merchant.conversation_id,
                            Message.role == "assistant",
                        )
                    )
                ).all()
                if m.other_data.get("delivery_key") == row.idempotency_key
            ]
        assert [m.content for m in history] == [message["body"]]
