"""The model misbehaves (the fake OpenAI, through the real OpenAIProvider): a passing fault is
retried and the customer gets the localized answer; a fault that lasts takes the documented
fallback after bounded retries (attempt 3), so the customer gets the admin's own words. A
support request whose classification keeps failing goes to the admins.

The scenarios of a test run at once, each on its own merchant: every fault only matches the
model calls that carry its notification's answer (a token in the prompt)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from tests.fakes.openai_server import FakeAIRequest, OpenAIFault
from tests.faults.harness import (
    AI_MARK,
    Stack,
    customer_words,
    ledger_row,
    run_concurrently,
    scenario,
)

LOCALIZE = "LocalizedMessage"  # the structured output of localize()

# name -> the fault (without its target). Content faults (the body is fine, the output is
# not) aim at the structured localize call: a composed reply is free text, so prose there is a
# valid (if chatty) reply rather than a fault.
FAULTS: dict[str, Callable[[], OpenAIFault]] = {
    "500": lambda: OpenAIFault("http", status=500, message="upstream error"),
    "503": lambda: OpenAIFault("http", status=503, message="overloaded"),
    "429 with retry-after": lambda: OpenAIFault(
        "http", status=429, message="Rate limit reached", retry_after=2
    ),
    "timeout": lambda: OpenAIFault("timeout", delay=6.0),
    "non-JSON HTTP body": lambda: OpenAIFault("garbage_body"),
    "non-JSON output": lambda: OpenAIFault("non_json", schema_name=LOCALIZE),
    "schema-invalid output": lambda: OpenAIFault("schema_invalid", schema_name=LOCALIZE),
    "empty output": lambda: OpenAIFault("empty"),
}


def _answer() -> tuple[str, str]:
    """A messy admin answer carrying a token unique to this scenario."""
    token = f"ref-{secrets.token_hex(4)}"
    return token, f"Our store   opens at 9am,\nMonday to Saturday ({token})."


def _aimed(fault: OpenAIFault, token: str, times: int | None) -> OpenAIFault:
    fault.predicate = lambda request: token in request.prompt_text
    fault.times = times
    return fault


async def _answer_with_fault(stack: Stack, name: str, lasting: bool) -> None:
    merchant = await stack.merchant()
    public = await stack.request(merchant)
    await stack.wait_waiting(public)
    customer = merchant.customer_phone or ""
    token, answer = _answer()
    async with scenario(f"openai {name} ({'lasting' if lasting else 'passing'})") as case:
        fault = stack.openai.add_fault(_aimed(FAULTS[name](), token, None if lasting else 1))
        await stack.answer(public, merchant.admin_ids[0], answer)
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        assert fault.used >= (3 if lasting else 1)
        (message,) = stack.twilio.accepted(to=customer)
        if lasting:
            # The documented fallback: the admin's own words, whitespace tidied.
            assert message["body"] == customer_words(answer)
        else:
            assert message["body"] == f"{AI_MARK} {customer_words(answer)}"
        row = await ledger_row(stack, public, "answer", customer)
        assert (row.status, row.provider_message_id) == ("sent", message["sid"])


async def test_lasting_model_faults_deliver_the_admins_own_words(make_stack) -> None:
    stack: Stack = await make_stack()
    await run_concurrently(
        {name: (lambda name=name: _answer_with_fault(stack, name, True)) for name in FAULTS}
    )


async def test_passing_model_faults_are_retried(make_stack) -> None:
    stack: Stack = await make_stack()
    await run_concurrently(
        {name: (lambda name=name: _answer_with_fault(stack, name, False)) for name in FAULTS}
    )


async def test_support_request_reaches_the_admins_when_classification_keeps_failing(
    make_stack,
) -> None:
    stack: Stack = await make_stack()
    merchant = await stack.merchant(user_types=["returns"])
    token, answer = _answer()
    reason = f"The returns label never arrived ({token})"
    async with scenario("openai 500 on every call of a support request") as case:
        stack.openai.add_fault(_aimed(OpenAIFault("http", status=500), token, None))
        public = await stack.request_support(merchant, reason)
        await stack.wait_waiting(public, timeout=90)
        status = await stack.status(public)
        assert sorted(status.recipients) == sorted(merchant.admin_ids)
        await stack.answer(
            public, merchant.admin_ids[0], answer, field="agent_response_to_customer"
        )
        assert (await stack.outcome(public)).status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        (message,) = stack.twilio.accepted(to=merchant.customer_phone)
        assert message["body"] == customer_words(answer)
        returns = merchant.phones[merchant.user("returns")]
        assert stack.twilio.accepted(to=returns) == []
        calls = [r for r in stack.openai.requests() if _mentions(r, token)]
        assert any(r.schema_name == "SupportClassification" for r in calls)


def _mentions(request: FakeAIRequest, token: str) -> bool:
    return token in request.prompt_text
