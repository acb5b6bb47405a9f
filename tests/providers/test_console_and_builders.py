"""ConsoleChannel and the provider builders."""

from __future__ import annotations

import logging

import pytest

from notifyflow.ai.offline import OfflineProvider
from notifyflow.ai.openai_provider import OpenAIProvider
from notifyflow.channels.base import OutboundTemplate, OutboundText
from notifyflow.channels.console import ConsoleChannel, console_message_id, mask_address
from notifyflow.channels.instagram import InstagramChannel
from notifyflow.channels.twilio_channel import TwilioChannel
from notifyflow.providers import build_ai, build_channel, build_instagram
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.twilio_server import FakeTwilio
from tests.fixtures.fakes import fake_settings


def test_mask_address() -> None:
    assert mask_address("+15551234567") == "********4567"
    assert mask_address("whatsapp:+15551234567") == "********4567"
    assert mask_address("123") == "***"


async def test_console_logs_and_ids_are_deterministic(caplog: pytest.LogCaptureFixture) -> None:
    channel = ConsoleChannel()
    caplog.set_level(logging.INFO, logger="notifyflow.channels.console")
    first = await channel.send_text(OutboundText("+15551234567", "+15550000000", "Hi", "key-1"))
    again = await channel.send_text(OutboundText("+15551234567", "+15550000000", "Hi", "key-1"))
    other = await channel.send_template(
        OutboundTemplate("+15551234567", "+15550000000", "HX" + "0" * 32, {"1": "x"}, "T x", "k2")
    )
    assert first.provider_message_id == again.provider_message_id == console_message_id("key-1")
    assert first.provider_message_id.startswith("CONSOLE-") and len(first.provider_message_id) == 32
    assert other.provider_message_id != first.provider_message_id
    assert [s.kind for s in channel.sent] == ["text", "text", "template"]
    assert "+15551234567" not in caplog.text and "********4567" in caplog.text


async def test_builders(twilio: FakeTwilio, openai: FakeOpenAI) -> None:
    offline = fake_settings()
    assert isinstance(build_ai(offline), OfflineProvider)
    assert isinstance(build_channel(offline), ConsoleChannel)
    assert isinstance(build_instagram(offline), ConsoleChannel)
    real = fake_settings(twilio, openai)
    ai = build_ai(real)
    assert isinstance(ai, OpenAIProvider)
    await ai.close()
    channel = build_channel(real)
    assert isinstance(channel, TwilioChannel)
    await channel.close()
    instagram = build_instagram(real, "token")
    assert isinstance(instagram, InstagramChannel)
    await instagram.close()
