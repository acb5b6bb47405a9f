"""The fakes themselves: wire formats the real SDKs accept, auth, faults, isolation."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import pytest
from openai import AsyncOpenAI, RateLimitError
from pydantic import BaseModel
from twilio.rest import Client

from notifyflow.channels.base import OutboundText, SendError
from notifyflow.channels.twilio_channel import RebasedAsyncHttpClient, TwilioChannel
from tests.fakes.openai_server import FakeOpenAI, example_for_schema
from tests.fakes.twilio_server import FakeTwilio, TwilioFault
from tests.fixtures.client_timeouts import PATIENT_S
from tests.fixtures.fakes import fake_settings

A, B = "+15550000001", "+15550000002"
SENDER = "+15559990000"


# ---- Twilio ----------------------------------------------------------------------------------


@pytest.fixture
async def sdk(twilio: FakeTwilio) -> AsyncIterator[Client]:
    http = RebasedAsyncHttpClient(twilio.base_url, timeout=PATIENT_S)
    client = Client(twilio.account_sid, twilio.auth_token, http_client=http, environment={})
    yield client
    await http.close()


@pytest.fixture
async def channel(twilio: FakeTwilio) -> AsyncIterator[TwilioChannel]:
    ch = TwilioChannel(fake_settings(twilio), timeout=PATIENT_S)
    yield ch
    await ch.close()


def out(to: str, body: str = "hi") -> OutboundText:
    return OutboundText(to=to, sender=SENDER, body=body, idempotency_key=f"{to}:{body}")


async def test_twilio_requires_basic_auth(twilio: FakeTwilio) -> None:
    url = f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    async with httpx.AsyncClient() as http:
        answer = await http.post(url, data={"To": A, "From": SENDER, "Body": "x"})
        other = await http.post(
            url.replace(twilio.account_sid, "AC" + "1" * 32),
            data={"To": A, "From": SENDER, "Body": "x"},
            auth=(twilio.account_sid, twilio.auth_token),
        )
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert other.status_code == 404 and other.json()["code"] == 20404
    assert [e["outcome"] for e in twilio.ledger] == ["unauthorized", "rejected"]


async def test_twilio_fault_matching_by_number(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    twilio.fail_next(400, 63014, to=B)
    await channel.send_text(out(A))
    with pytest.raises(SendError) as caught:
        await channel.send_text(out(B))
    assert caught.value.code == "63014"
    await channel.send_text(out(B, "again"))
    assert twilio.pending_faults == 0
    assert twilio.accepted_counts() == {(A, "text"): 1, (B, "text"): 1}


async def test_twilio_fault_times_and_predicate(channel: TwilioChannel, twilio: FakeTwilio) -> None:
    twilio.add_fault(
        TwilioFault(
            "http",
            status=500,
            code=20500,
            times=None,
            predicate=lambda e: "boom" in e["fields"].get("Body", ""),
        )
    )
    for _ in range(3):
        with pytest.raises(SendError):
            await channel.send_text(out(A, "boom"))
    await channel.send_text(out(A, "fine"))
    assert twilio.pending_faults == 1
    twilio.clear_faults()
    await channel.send_text(out(A, "boom"))
    assert twilio.accepted_count(A) == 2


async def test_twilio_faults_consumed_once_under_concurrency(
    channel: TwilioChannel, twilio: FakeTwilio
) -> None:
    twilio.fail_next(429, 20429, times=3)
    results = await asyncio.gather(
        *(channel.send_text(out(A, f"m{i}")) for i in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, SendError)]
    assert [r.code for r in refused] == ["20429"] * 3
    assert twilio.accepted_count(A) == 7
    assert len(twilio.sends()) == 10


async def test_twilio_fetch_and_list_pages(
    sdk: Client, channel: TwilioChannel, twilio: FakeTwilio
) -> None:
    since = datetime.now(UTC)
    for i in range(5):
        await channel.send_text(out(A, f"m{i}"))
    await channel.send_text(out(B, "other"))
    first = twilio.accepted(A)[0]
    fetched = await sdk.messages(first["sid"]).fetch_async()
    assert (fetched.sid, fetched.body, fetched.status) == (first["sid"], "m0", "queued")
    assert fetched.date_created is not None and fetched.date_created.tzinfo is not None
    assert fetched.date_sent is None  # still queued
    assert await sdk.messages.list_async(to=f"whatsapp:{A}", date_sent_after=since) == []
    assert len(await sdk.messages.list_async(to=f"whatsapp:{A}")) == 5
    assert twilio.dispatch() == 6
    sent = await sdk.messages(first["sid"]).fetch_async()
    assert sent.status == "sent" and sent.date_sent is not None
    listed = await sdk.messages.list_async(to=f"whatsapp:{A}", date_sent_after=since, page_size=2)
    assert [m.body for m in listed] == ["m4", "m3", "m2", "m1", "m0"]  # newest first
    pages = [e for e in twilio.ledger if e["method"] == "GET" and "PageSize" in e["query"]]
    assert len(pages) == 3
    assert (
        await sdk.messages.list_async(to=f"whatsapp:{A}", date_sent_after=since + timedelta(days=1))
        == []
    )
    assert len(await sdk.messages.list_async(from_=f"whatsapp:{SENDER}")) == 6
    assert len(await sdk.messages.list_async(date_sent=since.date())) == 6


# What the product sends, refused the way Twilio refuses it (platform-facts.md; Twilio's error
# pages 21211, 21617, 21655, 21658, 21910, 63028). The fake before issue 19 accepted all of it.
CONTENT_SID = "HX" + "cd" * 16
STRICT_CASES: list[tuple[str, dict[str, str], int]] = [
    ("unknown ContentSid", {"ContentSid": "HX" + "ef" * 16, "ContentVariables": "{}"}, 21655),
    ("too few variables", {"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "a"}'}, 63028),
    (
        "too many variables",
        {"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "a", "2": "b", "3": "c"}'},
        63028,
    ),
    ("no variables", {"ContentSid": CONTENT_SID}, 63028),
    (
        "variable over 1,600",
        {"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "a", "2": "' + "b" * 1601 + '"}'},
        21658,
    ),
    ("To without whatsapp:", {"To": A, "Body": "x"}, 21910),
    ("From without whatsapp:", {"From": SENDER, "Body": "x"}, 21910),
    ("garbage To", {"To": "whatsapp:+12-34", "Body": "x"}, 21211),
    ("To not E.164", {"To": "whatsapp:5550000001", "Body": "x"}, 21211),
    ("To too long", {"To": "whatsapp:+1234567890123456", "Body": "x"}, 21211),
    ("garbage From", {"From": "whatsapp:sender", "Body": "x"}, 21212),
    ("Body over 1,600", {"Body": "x" * 1601}, 21617),
    ("unknown Messaging Service", {"From": "", "MessagingServiceSid": "MG" + "0" * 32}, 21701),
]


@pytest.mark.parametrize(("case", "fields", "code"), STRICT_CASES, ids=[c[0] for c in STRICT_CASES])
async def test_twilio_refuses_what_twilio_refuses(
    twilio: FakeTwilio, case: str, fields: dict[str, str], code: int
) -> None:
    twilio.register_template(CONTENT_SID, "Order {{1}} ships {{2}}.")
    form = {"To": f"whatsapp:{A}", "From": f"whatsapp:{SENDER}", **fields}
    form = {k: v for k, v in form.items() if v}
    if "ContentSid" in form:
        form.pop("Body", None)
    elif "Body" not in form:
        form["Body"] = "x"
    url = f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    async with httpx.AsyncClient() as http:
        answer = await http.post(url, data=form, auth=(twilio.account_sid, twilio.auth_token))
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code
    assert twilio.accepted() == []


async def test_twilio_accepts_limits_exactly(twilio: FakeTwilio) -> None:
    twilio.register_template(CONTENT_SID, "Order {{1}} ships {{2}}.")
    url = f"{twilio.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    base = {"To": f"whatsapp:{A}", "From": f"whatsapp:{SENDER}"}
    async with httpx.AsyncClient(auth=(twilio.account_sid, twilio.auth_token)) as http:
        for extra in (
            {"Body": "x" * 1600},
            {"ContentSid": CONTENT_SID, "ContentVariables": '{"1": "42", "2": "today"}'},
        ):
            answer = await http.post(url, data={**base, **extra})
            assert answer.status_code == 201, answer.text
            assert answer.json()["date_sent"] is None and answer.json()["status"] == "queued"
    bodies = [m["body"] for m in twilio.accepted(A)]
    assert bodies == ["x" * 1600, "Order 42 ships today."]


async def test_twilio_fetch_unknown(sdk: Client) -> None:
    from twilio.base.exceptions import TwilioRestException

    with pytest.raises(TwilioRestException) as caught:
        await sdk.messages("SM" + "0" * 32).fetch_async()
    assert caught.value.status == 404 and caught.value.code == 20404


async def test_twilio_reset_isolates(twilio: FakeTwilio, channel: TwilioChannel) -> None:
    twilio.fail_next(500, 20500, to=A)
    twilio.close_window(A)
    await channel.send_text(out(B))
    twilio.reset()
    assert twilio.ledger == [] and twilio.accepted() == [] and twilio.pending_faults == 0
    await channel.send_text(out(A))  # window open again, fault gone


def test_twilio_stop_releases_sleepers_quickly() -> None:
    server = FakeTwilio().start()
    settings = fake_settings(server)

    async def send() -> None:
        ch = TwilioChannel(settings, timeout=0.3)
        try:
            server.timeout_next(delay=60)
            with pytest.raises(SendError):
                await ch.send_text(out(A))
        finally:
            await ch.close()

    asyncio.run(send())
    for _ in range(200):  # until the send is parked in its 60 s timeout (bounded wait)
        if server.in_flight == 1:
            break
        threading.Event().wait(0.01)
    assert server.in_flight == 1
    server.stop()
    # Stopping released the parked handler (it answered and left) rather than waiting it out.
    assert server.in_flight == 0
    assert not server._server.running
    server.stop()  # twice is fine


# ---- OpenAI ----------------------------------------------------------------------------------


class Verdict(BaseModel):
    label: Literal["spam", "ham"]
    reason: str


@pytest.fixture
async def client(openai: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    sdk = AsyncOpenAI(
        base_url=openai.base_url, api_key=openai.api_key, max_retries=0, timeout=PATIENT_S
    )
    yield sdk
    await sdk.close()


async def test_openai_chat_parse(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    completion = await client.chat.completions.parse(
        model="gpt-4.1",
        messages=[
            {"role": "system", "content": "classify"},
            {"role": "user", "content": "this is <b>ham</b> not spam"},
        ],
        response_format=Verdict,
        max_tokens=100,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed is not None and parsed.label in ("spam", "ham")
    assert completion.object == "chat.completion" and completion.usage is not None
    [entry] = openai.ledger
    assert (entry["model"], entry["max_tokens"], entry["schema_name"]) == (
        "gpt-4.1",
        100,
        "Verdict",
    )


async def test_openai_responses_parse(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    openai.set_responder(lambda r: '{"label": "spam", "reason": "' + r.model + '"}')
    response = await client.responses.parse(
        model="gpt-4.1-mini",
        instructions="classify",
        input="buy now",
        text_format=Verdict,
        max_output_tokens=50,
    )
    assert response.output_parsed == Verdict(label="spam", reason="gpt-4.1-mini")
    assert response.output_text.startswith("{")
    [entry] = openai.ledger
    assert entry["endpoint"] == "responses" and entry["max_tokens"] == 50
    assert entry["messages"] == [
        {"role": "system", "content": "classify"},
        {"role": "user", "content": "buy now"},
    ]


async def test_openai_responses_refusal(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    openai.fault_next("refusal", endpoint="responses")
    response = await client.responses.parse(model="m", input="x", text_format=Verdict)
    assert response.output_parsed is None
    assert response.output[0].type == "message"
    assert response.output[0].content[0].type == "refusal"


async def test_openai_rate_limit_header(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    openai.fail_next(429, "slow down", retry_after=3)
    with pytest.raises(RateLimitError) as caught:
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


async def test_openai_fault_matching(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    openai.fault_next("empty", schema_name="Verdict")
    plain = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello"}]
    )
    assert plain.choices[0].message.content == "hello"
    empty = await client.chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "x"}], response_format=Verdict
    )
    assert empty.choices[0].message.content == "" and empty.choices[0].message.parsed is None


async def test_openai_checks_the_key(openai: FakeOpenAI) -> None:
    sdk = AsyncOpenAI(base_url=openai.base_url, api_key="sk-other", max_retries=0)
    try:
        from openai import AuthenticationError

        with pytest.raises(AuthenticationError):
            await sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
    finally:
        await sdk.close()
    assert openai.ledger[0]["authorization"] == "Bearer sk-other"


def test_example_for_schema() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"n": {"type": "integer", "minimum": 2}},
                "required": ["n"],
            }
        },
        "properties": {
            "kind": {"enum": ["alpha", "beta"]},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 1},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]},
            "flag": {"type": "boolean"},
            "skipped": {"type": "string"},
        },
        "required": ["kind", "items", "maybe", "flag"],
    }
    assert example_for_schema(schema, "the beta version is fine") == {
        "kind": "beta",
        "items": [{"n": 2}],
        "maybe": "the b",
        "flag": True,
    }


# The real API's structured-outputs rules for strict: true, refused with 400 as the real API
# refuses them. The fake before issue 19 answered every one of these with a "valid" object.
_OK_OBJECT = {
    "type": "object",
    "properties": {"a": {"type": "string"}},
    "required": ["a"],
    "additionalProperties": False,
}
STRICT_SCHEMAS: list[tuple[str, dict[str, object], str]] = [
    (
        "additionalProperties missing",
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        "'additionalProperties' is required to be supplied and to be false",
    ),
    (
        "a property not required",
        {**_OK_OBJECT, "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
        "Missing 'b'",
    ),
    (
        "minLength",
        {**_OK_OBJECT, "properties": {"a": {"type": "string", "minLength": 1}}},
        "'minLength' is not permitted",
    ),
    (
        "default",
        {**_OK_OBJECT, "properties": {"a": {"type": "string", "default": "x"}}},
        "'default' is not permitted",
    ),
    ("root anyOf", {"anyOf": [_OK_OBJECT, {"type": "null"}]}, "schema must be a JSON Schema"),
    (
        "nested object open",
        {
            **_OK_OBJECT,
            "properties": {"a": {"type": "object", "properties": {}, "required": []}},
        },
        "context=('properties', 'a')",
    ),
    (
        "dangling $ref",
        {**_OK_OBJECT, "properties": {"a": {"$ref": "#/$defs/Missing"}}},
        "can't be resolved",
    ),
]


@pytest.mark.parametrize(
    ("case", "schema", "message"), STRICT_SCHEMAS, ids=[c[0] for c in STRICT_SCHEMAS]
)
async def test_openai_refuses_schemas_strict_mode_refuses(
    client: AsyncOpenAI, openai: FakeOpenAI, case: str, schema: dict[str, object], message: str
) -> None:
    from openai import BadRequestError

    fmt = {"type": "json_schema", "json_schema": {"name": "Out", "schema": schema, "strict": True}}
    with pytest.raises(BadRequestError) as caught:
        await client.chat.completions.create(
            model="gpt-4.1",
            messages=[{"role": "user", "content": "x"}],
            response_format=fmt,  # type: ignore[arg-type]
        )
    assert message in caught.value.message
    assert caught.value.param == "response_format"
    if case == "dangling $ref":
        return  # invalid in any mode
    # Without strict the same schema is accepted (best effort), as the real API does.
    fmt["json_schema"]["strict"] = False  # type: ignore[index]
    await client.chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "x"}],
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert [e["outcome"] for e in openai.ledger] == ["invalid_request", "ok"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, None),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "has space", "schema": _OK_OBJECT},
                },
            },
            "response_format.name",
        ),
    ],
)
async def test_openai_refuses_malformed_requests(
    openai: FakeOpenAI, body: dict[str, object], param: str | None
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{openai.base_url}/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {openai.api_key}"},
        )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


async def test_openai_answer_stops_at_max_tokens(client: AsyncOpenAI, openai: FakeOpenAI) -> None:
    openai.set_responder(lambda r: "word " * 100)
    completion = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], max_tokens=10
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert len(choice.message.content or "") == 40


async def test_openai_accepts_the_sdks_own_strict_schemas(client: AsyncOpenAI) -> None:
    """What ``parse(response_format=Model)`` sends passes the strict checks."""
    completion = await client.chat.completions.parse(
        model="gpt-4.1", messages=[{"role": "user", "content": "ham"}], response_format=Verdict
    )
    assert completion.choices[0].message.parsed is not None


# ---- the fakes' sockets ------------------------------------------------------------------------


def test_fake_servers_listen_with_nagle_off(twilio: FakeTwilio) -> None:
    """Asyncio turns Nagle's algorithm off only for sockets it knows are TCP (``proto`` 6); the
    fakes' own listening socket had ``proto`` 0, so every answer's body waited for the client's
    delayed ACK: about 40 ms per back-to-back request on a kept-alive connection, in every test
    and in the benchmark, where the real Twilio answers at once. Connections accepted from the
    listener inherit its TCP_NODELAY (Linux)."""
    listener = twilio._server.listener
    assert listener is not None
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
