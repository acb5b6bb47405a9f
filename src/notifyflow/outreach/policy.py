"""The pure rules of reaching a person: the 24-hour window, Instagram's 7 days, and the plainer
variable a template gets when the provider refuses the first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from notifyflow.models.vocabulary import DeliveryKind, SendMethod

WINDOW = timedelta(hours=24)
INSTAGRAM_HUMAN_AGENT_WINDOW = timedelta(days=7)
SHORTENED_LIMIT = 300


def window_open(last_inbound: datetime | None, now: datetime, window: timedelta = WINDOW) -> bool:
    """``use_campaign`` is its negation: no inbound message, or the last older than 24 h."""
    return last_inbound is not None and now - last_inbound <= window


@dataclass(frozen=True)
class InstagramDecision:
    """What Instagram allows now: a message (with the HUMAN_AGENT tag or not), or nothing."""

    allowed: bool
    human_agent: bool = False
    reason: str | None = None


def instagram_decision(
    last_inbound: datetime | None, now: datetime, kind: DeliveryKind
) -> InstagramDecision:
    """Instagram has no templates: inside 24 h a normal reply; up to 7 days only a
    human-authored answer with the HUMAN_AGENT tag; beyond that, no way to reach them."""
    if not window_open(last_inbound, now, INSTAGRAM_HUMAN_AGENT_WINDOW):
        return InstagramDecision(
            False,
            reason="the customer last wrote on Instagram more than 7 days ago (or never); "
            "Instagram allows no message now",
        )
    if window_open(last_inbound, now):
        return InstagramDecision(True)
    if kind in (DeliveryKind.answer, DeliveryKind.correction):
        # A correction is the human's answer again, so HUMAN_AGENT covers it too.
        return InstagramDecision(True, human_agent=True)
    return InstagramDecision(False, reason="the Instagram 24-hour window is closed")


def shortened_variable(text: str) -> str:
    """Printable characters only, single spaces, at most SHORTENED_LIMIT characters, cut at a
    word boundary: what any approved template accepts as a variable."""
    plain = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(plain) <= SHORTENED_LIMIT:
        return plain or "-"
    cut = plain[: SHORTENED_LIMIT - 1]
    return (cut[: cut.rfind(" ")] if " " in cut else cut).rstrip(" ,;:") + "…"


@dataclass(frozen=True)
class Outcome:
    """How reaching the customer ended: sent (by which method), or why not."""

    ok: bool
    method: SendMethod | None
    provider_message_id: str | None
    reason: str | None
