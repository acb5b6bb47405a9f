"""Steps the black-box tests share: request, answer, wait until asked, wait until settled."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.stack import E2EStack, Person, Shop, wait_status
from tests.faults.harness import until

TERMINAL = {"delivered", "delivery_failed", "expired", "closed"}


async def request(
    http: httpx.AsyncClient,
    shop: Shop,
    type: str,
    context: dict[str, Any],
    idempotency_key: str | None = None,
) -> str:
    body: dict[str, Any] = {
        "type": type,
        "conversation_id": shop.conversation_id,
        "context": context,
    }
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    response = await http.post("/v1/notifications", json=body)
    assert response.status_code == 202, f"POST /v1/notifications: {response.text}"
    public: str = response.json()["notification_id"]
    return public


async def answer(
    http: httpx.AsyncClient, public: str, by: Person, answer: dict[str, Any]
) -> dict[str, Any]:
    response = await http.post(
        f"/v1/notifications/{public}/answer", json={"answered_by": by.id, "answer": answer}
    )
    assert response.status_code == 200, f"answer {public}: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    assert body["accepted"] is True and body["notification_id"] == public, body
    return body


async def describe(http: httpx.AsyncClient, public: str) -> dict[str, Any]:
    response = await http.get(f"/v1/notifications/{public}")
    return {"http_status": response.status_code, **(response.json() if response.content else {})}


async def wait_asked(
    stack: E2EStack,
    http: httpx.AsyncClient,
    public: str,
    people: list[Person],
    timeout: float = 30.0,
) -> float:
    """Until every one of ``people`` got the request campaign of ``public``; returns when
    (``time.monotonic()``). On timeout, says what the product and the fake saw."""
    try:
        await until(
            lambda: all(stack.requests_to(p.phone, public) for p in people),
            f"{public}'s request to reach {[p.id for p in people]}",
            timeout,
            every=0.1,
        )
    except AssertionError as exc:
        refused = [
            (e["to"], e["status"], e["code"]) for e in stack.twilio.sends() if not e["accepted"]
        ]
        raise AssertionError(
            f"{exc}\nnotification: {await describe(http, public)}\n"
            f"fake Twilio refused: {refused[-10:]}\nworkflow: "
            f"{await stack.aworkflow_status(public)}\n{stack.logs()}"
        ) from None
    return time.monotonic()


async def settle(
    stack: E2EStack, http: httpx.AsyncClient, public: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Until the notification is terminal and its workflow has closed: nothing more will be
    sent for it, so counting what people received is final."""
    body = await wait_status(http, public, TERMINAL, timeout)

    async def closed() -> bool:
        status = await stack.aworkflow_status(public)
        return status is not None and status != "RUNNING"

    await until(closed, f"{public}'s workflow to close", timeout, every=0.2)
    return body
