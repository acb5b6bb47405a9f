"""InstagramChannel (httpx) against the fake Graph API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from notifyflow.channels.base import OutboundTemplate, OutboundText, SendError
from notifyflow.channels.instagram import InstagramChannel
from tests.fakes.graph_server import FAKE_PAGE_TOKEN, FakeGraph
from tests.fixtures.client_timeouts import IMPATIENT_S, PATIENT_S
from tests.fixtures.fakes import fake_settings

PAGE = "1789000000000001"
IGSID = "6543210987654321"


def message(human_agent: bool = False) -> OutboundText:
    return OutboundText(
        to=IGSID, sender=PAGE, body="We open at 9.", idempotency_key="k", human_agent=human_agent
    )


@pytest.fixture
async def channel(graph: FakeGraph) -> AsyncIterator[InstagramChannel]:
    ch = InstagramChannel(fake_settings(graph=graph), FAKE_PAGE_TOKEN, timeout=PATIENT_S)
    yield ch
    await ch.close()


async def test_send_response(channel: InstagramChannel, graph: FakeGraph) -> None:
    result = await channel.send_text(message())
    [entry] = graph.accepted()
    assert result.provider_message_id == entry["message_id"]
    assert entry["page_id"] == PAGE
    assert entry["payload"] == {
        "recipient": {"id": IGSID},
        "message": {"text": "We open at 9."},
        "messaging_type": "RESPONSE",
    }
    assert entry["headers"]["authorization"] == f"Bearer {FAKE_PAGE_TOKEN}"


async def test_human_agent_tag(channel: InstagramChannel, graph: FakeGraph) -> None:
    graph.close_window(IGSID)
    with pytest.raises(SendError) as caught:
        await channel.send_text(message())
    assert caught.value.window_closed and caught.value.code == "10"
    assert caught.value.extra["error_subcode"] == "2018278"
    await channel.send_text(message(human_agent=True))
    [entry] = graph.accepted()
    assert entry["payload"]["messaging_type"] == "MESSAGE_TAG"
    assert entry["payload"]["tag"] == "HUMAN_AGENT"


async def test_no_templates(channel: InstagramChannel) -> None:
    with pytest.raises(SendError) as caught:
        await channel.send_template(
            OutboundTemplate(IGSID, PAGE, "HX" + "0" * 32, {"1": "x"}, "x", "k")
        )
    assert caught.value.code == "instagram_no_templates" and not caught.value.retryable


@pytest.mark.parametrize(
    ("status", "code", "subcode", "retryable", "window_closed", "ambiguous"),
    [
        (400, 10, 2018278, False, True, False),
        (400, 10, None, False, False, False),
        (400, 4, None, True, False, False),
        (400, 613, None, True, False, False),
        (429, 32, None, True, False, False),
        (400, 100, None, False, False, False),
        (400, 551, 1545041, False, False, False),
        (500, 2, None, True, False, True),
        (503, 1, None, True, False, True),
    ],
)
async def test_graph_errors_map(
    channel: InstagramChannel,
    graph: FakeGraph,
    status: int,
    code: int,
    subcode: int | None,
    retryable: bool,
    window_closed: bool,
    ambiguous: bool,
) -> None:
    graph.fail_next(status, code, subcode)
    with pytest.raises(SendError) as caught:
        await channel.send_text(message())
    error = caught.value
    assert error.code == str(code)
    assert (error.retryable, error.window_closed, error.ambiguous) == (
        retryable,
        window_closed,
        ambiguous,
    )


async def test_timeout_is_ambiguous(graph: FakeGraph) -> None:
    graph.timeout_next()
    impatient = InstagramChannel(fake_settings(graph=graph), FAKE_PAGE_TOKEN, timeout=IMPATIENT_S)
    try:
        with pytest.raises(SendError) as caught:
            await impatient.send_text(message())
    finally:
        await impatient.close()
    assert caught.value.code == "timeout" and caught.value.ambiguous


async def test_bad_token(graph: FakeGraph) -> None:
    ch = InstagramChannel(fake_settings(graph=graph), "wrong")
    try:
        with pytest.raises(SendError) as caught:
            await ch.send_text(message())
    finally:
        await ch.close()
    assert caught.value.code == "190" and not caught.value.retryable


async def test_without_token(graph: FakeGraph) -> None:
    ch = InstagramChannel(fake_settings(graph=graph))
    with pytest.raises(SendError) as caught:
        await ch.send_text(message())
    assert caught.value.code == "instagram_not_configured"
    assert graph.ledger == []


async def test_the_page_token_comes_from_the_setting(graph: FakeGraph) -> None:
    from notifyflow.providers import build_instagram

    settings = fake_settings(
        graph=graph,
        NOTIFYFLOW_CHANNEL="twilio",
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_AUTH_TOKEN="t",
        INSTAGRAM_PAGE_ACCESS_TOKEN=FAKE_PAGE_TOKEN,
    )
    channel = build_instagram(settings)
    try:
        result = await channel.send_text(message())
    finally:
        await channel.aclose()  # type: ignore[attr-defined]
    assert result.provider_message_id and len(graph.accepted()) == 1
