"""Build the AI provider and the channels the settings ask for (once, in the worker).

The SDK-backed implementations are imported only when chosen, so the embedded default never
loads ``openai`` or ``twilio``.
"""

from __future__ import annotations

from notifyflow.ai.base import AIProvider
from notifyflow.channels.base import Channel
from notifyflow.config import Settings


def build_ai(settings: Settings) -> AIProvider:
    """OpenAIProvider when ``NOTIFYFLOW_AI`` resolves to openai, else the offline provider."""
    if settings.ai_provider == "openai":
        from notifyflow.ai.openai_provider import OpenAIProvider

        return OpenAIProvider(settings)
    from notifyflow.ai.offline import OfflineProvider

    return OfflineProvider()


def build_channel(settings: Settings) -> Channel:
    """The WhatsApp channel: Twilio when ``NOTIFYFLOW_CHANNEL`` resolves to twilio, else
    console."""
    if settings.channel_provider == "twilio":
        from notifyflow.channels.twilio_channel import TwilioChannel

        return TwilioChannel(settings)
    from notifyflow.channels.console import ConsoleChannel

    return ConsoleChannel()


def build_instagram(settings: Settings, page_access_token: str | None = None) -> Channel:
    """The Instagram channel; console too when the channel setting is console, so the
    embedded default never reaches the network."""
    if settings.channel_provider == "console":
        from notifyflow.channels.console import ConsoleChannel

        return ConsoleChannel(name="console-instagram")
    from notifyflow.channels.instagram import InstagramChannel

    token = page_access_token
    if token is None and settings.instagram_page_access_token is not None:
        token = settings.instagram_page_access_token.get_secret_value()
    return InstagramChannel(settings, token)
