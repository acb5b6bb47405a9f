"""The AI interface the activities use. Implementations: ``offline`` and ``openai``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SupportCategory:
    """A SupportClassification document: its title names a merchant-user type."""

    user_type: str
    description: str


@dataclass(frozen=True)
class Classification:
    user_type: str  # one of the categories' user types, or "admin"
    readable_type: str  # shown to admins and stored in the context ("Returns")


@dataclass(frozen=True)
class Localized:
    # Continues a template sentence ("…: {{1}}"); no newline, tab or run of 5 spaces.
    continuation_fragment: str
    # A standalone message for the free-form path.
    full_sentence: str


@dataclass(frozen=True)
class ChatTurn:
    role: str  # user | assistant
    content: str


class AIError(Exception):
    """The provider failed in a way worth retrying (5xx, 429, timeout, unparsable output)."""


class AIConfigError(AIError):
    """Not worth retrying: the endpoint refused the request itself (4xx other than 408, 409,
    429: bad key, unknown model, invalid parameters) or the request would be unsafe. Callers
    take their documented fallback at once."""


class AIProvider(Protocol):
    name: str

    async def classify_support(
        self, reason: str, categories: list[SupportCategory]
    ) -> Classification: ...

    async def localize(self, text: str, language: str) -> Localized: ...

    async def compose_reply(self, history: list[ChatTurn], answer: str, language: str) -> str: ...

    async def answer_from_reply(
        self, reply: str, schema: dict[str, Any], request_summary: str
    ) -> dict[str, Any] | None:
        """Turn an admin's WhatsApp reply into the answer object; None when it is no answer."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once when the worker stops."""
        ...
