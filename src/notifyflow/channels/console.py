"""The embedded default channel: logs what would have been sent, sends nothing.

The caller records messages and deliveries in the database, so this channel keeps no state but
a short in-memory tail (``sent``) that tests and the dev stack can inspect.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from notifyflow.channels.base import OutboundTemplate, OutboundText, SendResult

log = logging.getLogger(__name__)


def mask_address(value: str) -> str:
    """Keep the last four digits of a phone number or id: ``+15551234567`` → ``*******4567``."""
    plain = value.removeprefix("whatsapp:")
    if len(plain) <= 4:
        return "*" * len(plain)
    return "*" * (len(plain) - 4) + plain[-4:]


def console_message_id(idempotency_key: str) -> str:
    """The same key always gets the same id, so a retried send is recognisably the same."""
    return "CONSOLE-" + hashlib.sha1(idempotency_key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ConsoleSend:
    kind: Literal["text", "template"]
    to: str
    sender: str
    body: str
    provider_message_id: str
    idempotency_key: str
    content_sid: str | None = None


class ConsoleChannel:
    """A Channel that logs each send and returns a deterministic provider id."""

    def __init__(self, name: str = "console", keep: int = 1000) -> None:
        self.name = name
        self.sent: deque[ConsoleSend] = deque(maxlen=keep)

    async def send_text(self, message: OutboundText) -> SendResult:
        provider_id = console_message_id(message.idempotency_key)
        self.sent.append(
            ConsoleSend(
                "text",
                message.to,
                message.sender,
                message.body,
                provider_id,
                message.idempotency_key,
            )
        )
        log.info(
            "console %s text to %s: %s (id %s)",
            self.name,
            mask_address(message.to),
            message.body,
            provider_id,
        )
        return SendResult(provider_message_id=provider_id, status="sent")

    async def send_template(self, message: OutboundTemplate) -> SendResult:
        provider_id = console_message_id(message.idempotency_key)
        self.sent.append(
            ConsoleSend(
                "template",
                message.to,
                message.sender,
                message.rendered_body,
                provider_id,
                message.idempotency_key,
                message.content_sid,
            )
        )
        log.info(
            "console %s template %s to %s: %s (id %s)",
            self.name,
            message.content_sid,
            mask_address(message.to),
            message.rendered_body,
            provider_id,
        )
        return SendResult(provider_message_id=provider_id, status="sent")

    async def find_accepted(
        self, to: str, sender: str, since: datetime, body_or_content_sid: str
    ) -> str | None:
        """Nothing to ask: a console send never fails ambiguously."""
        return None

    async def close(self) -> None:
        """Nothing to release; present so every channel can be closed the same way."""

    aclose = close  # the worker closes resources with ``aclose()``
