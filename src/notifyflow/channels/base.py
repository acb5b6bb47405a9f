"""The channel interface the activities use. Implementations: ``console``, ``twilio``,
``instagram``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutboundText:
    """A free-form message (inside the 24-hour window)."""

    to: str  # "+15551234567" for WhatsApp, the IGSID for Instagram
    sender: str  # the merchant's WhatsApp sender or Instagram page id
    body: str
    idempotency_key: str
    human_agent: bool = False  # Instagram HUMAN_AGENT tag (24 h to 7 days)


@dataclass(frozen=True)
class OutboundTemplate:
    """An approved template: Content API SID plus numbered variables."""

    to: str
    sender: str
    content_sid: str
    variables: dict[str, str]
    rendered_body: str  # the body with variables filled, for the ledger and the history
    idempotency_key: str


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: str = "sent"


# A message's provider status: taken (and maybe further along), or refused for good.
ACCEPTED_STATUSES = frozenset({"sent", "queued", "delivered", "read"})
FAILED_STATUSES = frozenset({"failed", "undelivered"})

# The provider's codes for "the 24-hour window is closed": Twilio 63016, WhatsApp 131047.
WINDOW_CLOSED_CODES = frozenset({"63016", "131047"})
# Twilio's refusals of a template variable that a plainer, shorter variable fixes (63013
# whitespace or characters, 63021 too long).
VARIABLE_REFUSAL_CODES = frozenset({"63013", "63021"})


def closes_window(code: str | None) -> bool:
    """A WhatsApp error code (a send's, or a status callback's) saying the window is closed."""
    return code in WINDOW_CLOSED_CODES


@dataclass
class SendError(Exception):
    """A send the provider refused. ``retryable`` decides whether Temporal tries again."""

    code: str
    message: str
    retryable: bool = False
    # The provider said the 24-hour window is closed (Twilio 63016, WhatsApp 131047).
    window_closed: bool = False
    # Ambiguous: the provider may have accepted the message (5xx, timeout).
    ambiguous: bool = False
    # The deployment is misconfigured (credentials refused, an unknown Content SID, a template
    # whose variables do not match): every send would fail the same way, for every person, until
    # an operator fixes it. The notification ends at once instead of retrying for a day.
    config_error: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")

    @property
    def variable_refused(self) -> bool:
        """The template's variable was refused; a plainer, shorter one may go through."""
        return self.code in VARIABLE_REFUSAL_CODES


class Channel(Protocol):
    name: str

    async def send_text(self, message: OutboundText) -> SendResult: ...

    async def send_template(self, message: OutboundTemplate) -> SendResult: ...

    async def find_accepted(
        self, to: str, sender: str, since: datetime, body_or_content_sid: str
    ) -> str | None:
        """The provider id of a message to ``to`` sent since ``since`` with that body, when the
        provider can be asked (a retry after an ambiguous send); None when it took none or
        cannot tell."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
