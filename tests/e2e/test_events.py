"""Black box: the live event stream (`GET /v1/notifications/{id}/events`, Server-Sent Events).
A client connects mid-way, drops the connection, reconnects with `Last-Event-ID`, and has seen
every timeline entry exactly once, in order, when the stream closes at the terminal state."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx

from tests.e2e.flows import answer, request, settle, wait_asked
from tests.e2e.stack import E2EStack, open_shop
from tests.fakes.openai_server import OpenAIFault
from tests.faults.harness import until


async def _read(
    http: httpx.AsyncClient,
    public: str,
    last_id: str | None,
    stop_after: int | None,
    into: list[tuple[str, dict[str, Any]]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Events as (id, entry) until the stream ends, or until ``stop_after`` were read;
    ``into``: the list they are appended to as they come."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    events: list[tuple[str, dict[str, Any]]] = [] if into is None else into
    async with http.stream("GET", f"/v1/notifications/{public}/events", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event_id, data = "", ""
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                events.append((event_id, json.loads(data)))
                data = ""
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events


async def test_a_client_that_reconnects_sees_every_event_once_in_order(stack: E2EStack) -> None:
    async with stack.http(timeout=60) as http:
        shop = await open_shop(http, admins=2)
        public = await request(http, shop, "user_question_request", {"question": "Gift wrap?"})
        await wait_asked(stack, http, public, shop.admins)
        # Mid-way: the request and both sends exist; read two events and drop the connection.
        first = await _read(http, public, None, stop_after=2)
        assert [e["event"] for _, e in first][0] == "requested"
        await answer(http, public, shop.admins[0], {"answer": "Yes, for free."})
        rest = await _read(http, public, first[-1][0], stop_after=None)
        await settle(stack, http, public)
        timeline = (await stack.acli("show", public, "--json")).stdout
    seen = first + rest
    ids = [int(i) for i, _ in seen]
    assert ids == list(range(len(seen))), ids  # once each, in order, none skipped
    events = [e["event"] for _, e in seen]
    assert "delivered" in events and "answer accepted" in events
    # The other admin's closure notice goes out with the customer's answer and is recorded
    # with the outcome: the stream has it before it ends at the terminal state.
    assert "sent closure" in events
    assert events.index("sent closure") > events.index("answer accepted")
    assert events.count("requested") == 1
    shown = json.loads(timeline)
    entries = shown.get("timeline", shown) if isinstance(shown, dict) else shown
    if isinstance(entries, list):
        assert len(entries) == len(seen)
    # A finished notification's stream is its whole timeline, then the end.
    async with stack.http(timeout=30) as http:
        again = await _read(http, public, None, stop_after=None)
    assert [e for _, e in again] == [e for _, e in seen]


async def test_a_refusal_while_the_reply_is_composed_streams_both_once(
    stack: E2EStack,
) -> None:
    """Admin 1's answer is taken, localized, and written with its sends only once the reply
    to the customer is composed (the model is held there); admin 2 answers meanwhile and is
    refused at once, and the listener has that refusal. The answer must still reach it,
    after the refusal, once, and nothing twice."""
    token = f"ref-{secrets.token_hex(4)}"
    # Held, then answered as usual: the same attempt of the delivery writes the answer (held
    # less than the product's 30 s model timeout, so a late release is still this attempt).
    held = OpenAIFault("slow", delay=25.0)
    # The composed reply (free text: no schema) of this answer only.
    held.predicate = lambda call: token in call.prompt_text and call.schema_name is None
    seen: list[tuple[str, dict[str, Any]]] = []

    def has(event: str) -> bool:
        return any(e["event"] == event for _, e in seen)

    async with stack.http(timeout=90) as http:
        shop = await open_shop(http, admins=2)
        public = await request(http, shop, "user_question_request", {"question": "Gift wrap?"})
        await wait_asked(stack, http, public, shop.admins)
        listening = asyncio.create_task(_read(http, public, None, None, into=seen))
        stack.openai.add_fault(held)
        try:
            await answer(http, public, shop.admins[0], {"answer": f"Yes, for free ({token})."})
            await until(lambda: held.used == 1, "the reply's composition held", timeout=30)
            second = await http.post(
                f"/v1/notifications/{public}/answer",
                json={"answered_by": shop.admins[1].id, "answer": {"answer": "No."}},
            )
            assert second.status_code == 409, second.text
            await until(lambda: has("answer refused"), "the refusal streamed", timeout=30)
            assert not has("answer accepted")  # the race: still being composed
        finally:
            stack.openai.release_held()
        await asyncio.wait_for(listening, 90)
        await settle(stack, http, public)
    ids = [int(i) for i, _ in seen]
    assert ids == list(range(len(seen))), ids
    events = [e["event"] for _, e in seen]
    assert events.count("answer accepted") == 1 and events.count("answer refused") == 1
    assert events.index("answer refused") < events.index("answer accepted")
    assert "delivered" in events
    async with stack.http(timeout=30) as http:
        again = await _read(http, public, None, stop_after=None)
    assert [e for _, e in again] == [e for _, e in seen]


async def test_the_event_stream_of_an_unknown_notification_is_404(stack: E2EStack) -> None:
    async with stack.http() as http:
        missing = await http.get("/v1/notifications/NOTIF_2147483000/events")
        assert missing.status_code == 404
        malformed = await http.get("/v1/notifications/NOTIF_x/events")
        assert malformed.status_code == 400
