"""The embedded default AI: deterministic, no network.

- ``classify_support`` scores word overlap between the reason and each category's user type
  and description (lower-cased words, stopwords dropped, a plural ``s`` folded); a unique best
  score above zero wins, anything else goes to ``admin`` ("General").
- ``localize`` does not translate: ``language`` is accepted and ignored. It cleans the admin's
  text into a standalone sentence and a template-safe fragment (one line, no tab, no run of
  spaces, at most :data:`FRAGMENT_LIMIT` characters).
- ``compose_reply`` returns the localized full sentence; ``answer_from_reply`` fills a schema's
  single required string property with the reply.
"""

from __future__ import annotations

import re
from typing import Any

from notifyflow.ai.base import ChatTurn, Classification, Localized, SupportCategory

FRAGMENT_LIMIT = 900
ELLIPSIS = "…"

_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_END_PUNCTUATION = (".", "!", "?", "…", "。", "！", "？", ".)", '."', ".”", "!)", "?)")
_STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just me more
    most my no nor not now of off on once only or other our ours out over own same she should
    so some such than that the their theirs them then there these they this those through to
    too under until up very was we were what when where which while who whom why will with
    would you your yours please thanks thank hi hello want need like get got also i'm im
    customer customers request requests question questions
    """.split()
)


def collapse_whitespace(text: str) -> str:
    """Every run of whitespace (newlines and tabs included) becomes one space; stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def as_sentence(text: str) -> str:
    """``text`` cleaned and ending in punctuation."""
    cleaned = collapse_whitespace(text)
    if cleaned and not cleaned.endswith(_END_PUNCTUATION):
        cleaned += "."
    return cleaned


def truncate_words(text: str, limit: int = FRAGMENT_LIMIT) -> str:
    """At most ``limit`` characters, cut at a word boundary and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    room = limit - len(ELLIPSIS)
    cut = text[: room + 1]
    space = cut.rfind(" ")
    head = cut[:space] if space > room // 2 else text[:room]
    return head.rstrip(" ,;:-") + ELLIPSIS


def _keeps_capital(word: str, rest: str) -> bool:
    """Whether a sentence's first word should stay capitalized inside another sentence."""
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return True
    if word == "I" or word.startswith(("I'", "I’")):
        return True
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return True  # an acronym: API, DHL
    if any(c.isupper() for c in word[1:]):
        return True  # iPhone, McDonald
    # Capitalized again mid-text, it is likely a name ("Lisbon ... from Lisbon").
    return re.search(rf"(?<![.!?]\s)\b{re.escape(word)}\b", rest) is not None


def as_fragment(text: str, limit: int = FRAGMENT_LIMIT) -> str:
    """A template variable continuing a sentence: one line, lower-case start unless a name or
    acronym, within ``limit`` characters. Never empty for non-blank input."""
    cleaned = collapse_whitespace(text)
    if not cleaned:
        return cleaned
    first, _, rest = cleaned.partition(" ")
    if first[0].isupper() and not _keeps_capital(first.strip(".,;:!?\"'()"), rest):
        cleaned = first[0].lower() + cleaned[1:]
    return truncate_words(cleaned, limit)


def _tokens(text: str) -> set[str]:
    words = set()
    for raw in _WORD.findall(text.lower()):
        if raw in _STOPWORDS or len(raw) < 2:
            continue
        if len(raw) > 3 and raw.endswith("s") and not raw.endswith("ss"):
            raw = raw[:-1]
        words.add(raw)
    return words


def readable(user_type: str) -> str:
    """``returns`` → ``Returns``, ``tech_support`` → ``Tech Support``."""
    return collapse_whitespace(user_type.replace("_", " ").replace("-", " ")).title()


class OfflineProvider:
    """Deterministic AIProvider for the embedded default and tests."""

    name = "offline"

    async def classify_support(
        self, reason: str, categories: list[SupportCategory]
    ) -> Classification:
        words = _tokens(reason)
        scores: dict[str, int] = {}
        for category in categories:
            overlap = len(words & _tokens(f"{category.user_type} {category.description}"))
            scores[category.user_type] = max(scores.get(category.user_type, 0), overlap)
        best = max(scores.values(), default=0)
        winners = [user_type for user_type, score in scores.items() if score == best]
        if best == 0 or len(winners) != 1:
            return Classification(user_type="admin", readable_type="General")
        return Classification(user_type=winners[0], readable_type=readable(winners[0]))

    async def localize(self, text: str, language: str) -> Localized:
        """Clean ``text``; ``language`` is ignored (no translation offline)."""
        return Localized(continuation_fragment=as_fragment(text), full_sentence=as_sentence(text))

    async def compose_reply(self, history: list[ChatTurn], answer: str, language: str) -> str:
        return as_sentence(answer)

    async def aclose(self) -> None:
        """Nothing to release."""

    async def answer_from_reply(
        self, reply: str, schema: dict[str, Any], request_summary: str
    ) -> dict[str, Any] | None:
        """``{field: reply}`` when the schema has exactly one required string property."""
        properties = schema.get("properties") or {}
        required = [
            name
            for name in schema.get("required") or []
            if isinstance(properties.get(name), dict) and properties[name].get("type") == "string"
        ]
        if len(required) != 1 or len(schema.get("required") or []) != 1:
            return None
        cleaned = collapse_whitespace(reply)
        return {required[0]: cleaned} if cleaned else None
