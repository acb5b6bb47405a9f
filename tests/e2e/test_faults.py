"""Black box, under faults: Temporal frozen (SIGSTOP of the dev server), the API dying between
its commit and the workflow start, Twilio failing or refusing the credentials. Faults are
injected from the outside only: signals to processes, ``NOTIFYFLOW_FAULT`` in a process's
environment, and the fake Twilio's answers.

"Exactly once" is counted after the notification has settled (terminal, its workflow closed),
never after a fixed sleep. Durations are printed in the run's summary, not asserted; a client
timeout bounds what the contract bounds (DESIGN §7).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Figures
from tests.e2e.flows import TERMINAL, answer, describe, request, settle, wait_asked
from tests.e2e.stack import (
    E2EStack,
    Shop,
    accepted,
    closure_notices,
    failed_sends,
    open_shop,
    wait_status,
    words_of,
)
from tests.faults.harness import until

QUESTION = "Can I pick my order up at the warehouse?"
ANSWER = "Yes, weekdays from 9 to 5 at Dock 4."
# Client-side bounds: the contract's 10 s for the answer route, plus slack for a busy machine;
# a response time for the rest (a frozen dependency must not hang a route).
ANSWER_BOUND = 15.0
ROUTE_BOUND = 30.0


def _question(shop: Shop, key: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "user_question_request",
        "conversation_id": shop.conversation_id,
        "context": {"question": QUESTION},
    }
    if key is not None:
        body["idempotency_key"] = key
    return body


async def _asked_once_then_settled(
    stack: E2EStack, http: httpx.AsyncClient, shop: Shop, public: str
) -> dict[str, Any]:
    """Answer as the first admin, wait until settled, then count: every admin asked exactly
    once, the other told it is closed, the customer answered once."""
    await answer(http, public, shop.admins[0], {"answer": ANSWER})
    body = await settle(stack, http, public)
    assert body["status"] == "delivered", body
    for admin in shop.admins:
        got = len(stack.requests_to(admin.phone, public))
        assert got == 1, f"admin {admin.id} was asked {got} times for {public}"
    assert len(closure_notices(stack.twilio, shop.admins[1].phone, public)) == 1
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert "Dock 4" in words_of(reply)
    return body


async def _orphan_request(stack: E2EStack, shop: Shop, figures: Figures) -> tuple[str, float]:
    """POST a question to an API that dies right after its commit (NOTIFYFLOW_FAULT), restart
    the API normally and find the recorded notification over HTTP. Returns its id and when
    the API died."""
    stack.stop_api()
    stack.start_api(NOTIFYFLOW_FAULT="exit_after_record")
    async with stack.http(timeout=ROUTE_BOUND) as http:
        try:
            response = await http.post("/v1/notifications", json=_question(shop))
        except httpx.TransportError as exc:
            died_at = time.monotonic()
            dropped = exc.__class__.__name__
        else:
            pytest.fail(
                f"the API answered {response.status_code} {response.text[:300]}: with "
                "NOTIFYFLOW_FAULT=exit_after_record it must exit after its commit"
            )
    assert stack.api is not None
    api = stack.api
    await until(lambda: api.exited() is not None, "the faulty API to exit", 10)
    figures.add("faulty API: client saw", dropped)
    figures.add("faulty API: exit code", str(api.exited()))
    stack.stop_api()
    stack.start_api()
    async with stack.http() as http:
        listed = (await http.get(f"/v1/notifications?merchant_id={shop.merchant_id}")).json()[
            "items"
        ]
    assert [n["status"] for n in listed] == ["requested"], listed
    public: str = listed[0]["notification_id"]
    return public, died_at


async def test_a_request_while_temporal_is_frozen_answers_and_is_carried_through(
    stack: E2EStack, figures: Figures
) -> None:
    """Finding 2a: 202 with the id while Temporal answers nothing; after it resumes the
    workflow runs and each admin is asked once; the same idempotency key, the same id."""
    key = f"e2e-frozen-{secrets.token_hex(6)}"
    async with stack.http(timeout=ROUTE_BOUND) as http:
        shop = await open_shop(http)
        # The API is connected to Temporal already (the request is not its first contact).
        assert (await http.get("/healthz")).json()["temporal"] == "ok"
        with stack.temporal_frozen():
            started = time.monotonic()
            try:
                response = await http.post("/v1/notifications", json=_question(shop, key))
            except httpx.TimeoutException:
                pytest.fail(f"POST /v1/notifications hung over {ROUTE_BOUND}s, Temporal frozen")
            took = time.monotonic() - started
            figures.add("POST /v1/notifications response time, Temporal frozen", took, "s")
            figures.add("POST /v1/notifications status, Temporal frozen", response.status_code)
        resumed = time.monotonic()
        if response.status_code != 202:
            left = (await http.get(f"/v1/notifications?merchant_id={shop.merchant_id}")).json()[
                "items"
            ]
            pytest.fail(
                f"{response.status_code} {response.text}; rows it left behind: "
                f"{[(n['notification_id'], n['status']) for n in left]}"
            )
        public = response.json()["notification_id"]

        asked = await wait_asked(stack, http, public, shop.admins, timeout=60)
        figures.add("Temporal resumed → every admin asked", asked - resumed, "s")
        assert await stack.aworkflow_status(public) is not None

        retry = await http.post("/v1/notifications", json=_question(shop, key))
        assert retry.status_code == 202, retry.text
        assert retry.json()["notification_id"] == public
        await _asked_once_then_settled(stack, http, shop, public)


async def test_a_request_whose_api_died_after_the_commit_is_started_by_the_sweeper(
    stack: E2EStack, figures: Figures
) -> None:
    """Finding 2b: the row was committed, the API died before the start; a worker's sweeper
    starts the workflow within a minute and each admin is asked once."""
    async with stack.http() as http:
        shop = await open_shop(http)
    public, died_at = await _orphan_request(stack, shop, figures)
    async with stack.http() as http:
        asked = await wait_asked(stack, http, public, shop.admins, timeout=60)
        figures.add("API died → every admin asked (sweeper)", asked - died_at, "s")
        await _asked_once_then_settled(stack, http, shop, public)


async def test_closing_an_orphan_before_any_sweeper_gets_it(
    stack: E2EStack, figures: Figures
) -> None:
    """Finding 2b, the operator's side: with no worker running, `notifyflow close` on a
    recorded notification whose workflow never started succeeds, and it ends closed."""
    async with stack.http() as http:
        shop = await open_shop(http)
    stack.stop_worker()
    public, _ = await _orphan_request(stack, shop, figures)
    assert await stack.aworkflow_status(public) is None, "the orphan has a workflow already"

    started = time.monotonic()
    done = await stack.acli("close", public, "--reason", "e2e: duplicate", "--json")
    figures.add("`notifyflow close` on an orphan, no worker", time.monotonic() - started, "s")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    figures.add("status `notifyflow close --json` printed", json.loads(done.stdout)["status"])

    stack.start_worker()
    async with stack.http() as http:
        body = await wait_status(http, public, TERMINAL, timeout=60)
        assert body["status"] == "closed", body

        async def workflow_done() -> bool:
            return await stack.aworkflow_status(public) in (None, "COMPLETED")

        await until(workflow_done, f"{public}'s workflow, if any, to complete", 60, every=0.2)
        body = await describe(http, public)
    assert body["status"] == "closed", body
    assert body["close_reason"] == "e2e: duplicate", body
    asked = sum(len(stack.requests_to(a.phone, public)) for a in shop.admins)
    figures.add("requests sent for the closed orphan", asked)


async def test_an_answer_while_the_fan_out_keeps_failing_is_accepted_at_once(
    stack: E2EStack, figures: Figures
) -> None:
    """Finding 3: Twilio fails every send, so the fan-out activity keeps retrying; an admin's
    answer is accepted within the route's bound, and once Twilio recovers the customer gets
    exactly one answer."""
    async with stack.http(timeout=ANSWER_BOUND) as http:
        shop = await open_shop(http)
        stack.twilio.fail_next(500, 20500, "Internal Server Error", times=None)
        public = await request(http, shop, "user_question_request", {"question": QUESTION})
        phones = {a.phone for a in shop.admins}
        await until(lambda: failed_sends(stack.twilio, phones) > 0, "a failed fan-out", 30)

        started = time.monotonic()
        try:
            response = await http.post(
                f"/v1/notifications/{public}/answer",
                json={"answered_by": shop.admins[0].id, "answer": {"answer": ANSWER}},
            )
        except httpx.TimeoutException:
            pytest.fail(f"the answer route hung over {ANSWER_BOUND}s while the fan-out retried")
        figures.add("answer route wait, fan-out retrying", time.monotonic() - started, "s")
        assert response.status_code == 200, f"{response.status_code} {response.text}"
        assert response.json()["accepted"] is True
        figures.add("failed sends before recovery", failed_sends(stack.twilio, phones))

        stack.twilio.clear_faults()
        recovered = time.monotonic()
        body = await settle(stack, http, public, timeout=120)
        figures.add("Twilio recovered → settled", time.monotonic() - recovered, "s")

    assert body["status"] == "delivered", body
    (reply,) = accepted(stack.twilio, shop.customer_phone)
    assert "Dock 4" in words_of(reply)
    for admin in shop.admins:
        assert len(stack.requests_to(admin.phone, public)) <= 1


async def test_refused_credentials_end_the_notification_promptly(
    stack: E2EStack, figures: Figures
) -> None:
    """A configuration error (Twilio 401, code 20003, to every send) is not retried for a day:
    the notification is closed with a reason naming it, in GET and `notifyflow show`."""
    async with stack.http() as http:
        shop = await open_shop(http)
        stack.twilio.fail_next(401, 20003, "Authenticate", times=None)
        started = time.monotonic()
        public = await request(http, shop, "user_question_request", {"question": QUESTION})
        body = await wait_status(http, public, TERMINAL, timeout=60)
        figures.add("Twilio 401 → terminal state", time.monotonic() - started, "s")
        assert body["status"] == "closed", body
        assert "configuration error" in (body.get("close_reason") or "").lower(), body
        figures.add("close_reason", repr(body["close_reason"]))

        shown = await stack.acli("show", public, "--json")
        assert shown.returncode == 0, shown.stderr
        notification = json.loads(shown.stdout)["notification"]
        assert notification["status"] == "closed"
        assert notification["close_reason"] == body["close_reason"]
        await settle(stack, http, public)
    assert accepted(stack.twilio, shop.customer_phone) == []


async def test_readiness_names_a_frozen_temporal_while_liveness_stays_up(
    stack: E2EStack, figures: Figures
) -> None:
    async with stack.http(timeout=ROUTE_BOUND) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready", ready.json()
        assert (await http.get("/healthz")).status_code == 200

        with stack.temporal_frozen():
            started = time.monotonic()
            try:
                frozen = await http.get("/readyz")
            except httpx.TimeoutException:
                pytest.fail(f"/readyz hung over {ROUTE_BOUND}s while Temporal was frozen")
            figures.add("/readyz response time, Temporal frozen", time.monotonic() - started, "s")
            started = time.monotonic()
            alive = await http.get("/healthz")
            figures.add("/healthz response time, Temporal frozen", time.monotonic() - started, "s")
        resumed = time.monotonic()

        assert frozen.status_code == 503, frozen.text
        error = frozen.json()["error"]
        assert error["code"] == "not_ready", error
        assert "temporal" in error["message"].lower(), error
        assert alive.status_code == 200, alive.text

        async def ready_again() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await until(ready_again, "/readyz to answer 200 again", 30, every=0.2)
        figures.add("Temporal resumed → /readyz 200", time.monotonic() - resumed, "s")
        assert (await http.get("/healthz")).status_code == 200
