"""Campaign templates: lookup by campaign, language and merchant, and WhatsApp-safe variables."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import CampaignTemplate
from notifyflow.models.languages import language_fallbacks

MAX_BODY = 1024
_SLOT = re.compile(r"\{\{(\d+)\}\}")
_WS = re.compile(r"\s+")


TEMPLATE_CACHE_SECONDS = 30.0
_cache: dict[tuple[str, tuple[str, ...], int], tuple[float, CampaignTemplate]] = {}


class TemplateMissing(LookupError):
    """No template for a campaign in any acceptable language: a configuration error."""


@dataclass(frozen=True)
class RenderedTemplate:
    campaign: str
    language: str
    content_sid: str
    variables: dict[str, str]
    body: str


def clean_variable(value: str) -> str:
    """WhatsApp refuses newlines, tabs, runs of more than four spaces and empty values
    (Twilio 63013): fold all whitespace to single spaces and never leave it empty."""
    text = _WS.sub(" ", value).strip()
    return text or "-"


def _render(body: str, variables: dict[str, str]) -> str:
    return _SLOT.sub(lambda m: variables.get(m.group(1), m.group(0)), body)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 1)]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"


def render(template: CampaignTemplate, values: list[str]) -> RenderedTemplate:
    """Fill ``{{1}}``… with cleaned values, shortening the longest so the body fits 1,024."""
    variables = {str(i): clean_variable(v) for i, v in enumerate(values, start=1)}
    body = _render(template.body, variables)
    while len(body) > MAX_BODY:
        longest = max(variables, key=lambda k: len(variables[k]))
        excess = len(body) - MAX_BODY
        variables[longest] = _shorten(variables[longest], len(variables[longest]) - excess)
        body = _render(template.body, variables)
    return RenderedTemplate(
        campaign=template.campaign,
        language=template.language,
        content_sid=template.content_sid,
        variables=variables,
        body=body,
    )


def language_candidates(language: str | None, fallback: str | None) -> list[str]:
    """The customer's language down its chain (``pt-BR`` → ``pt-BR, pt``; ``zh-Hant-TW`` →
    ``zh-Hant``, ``zh``; ``nb`` ≈ ``no``: models/languages.py), then the merchant's default
    language down its own, then ``en``."""
    out: list[str] = []
    for lang in (language, fallback, "en"):
        if not lang:
            continue
        for candidate in language_fallbacks(lang):
            if candidate not in out:
                out.append(candidate)
    return out


async def find_template(
    source: AsyncSession | SessionFactory,
    campaign: str,
    language: str | None,
    merchant_id: int,
    merchant_language: str | None,
) -> CampaignTemplate:
    """The merchant's own template wins over the product default, language by language.

    Looked up once per TEMPLATE_CACHE_SECONDS per worker: templates change rarely (an operator's
    PUT), and every fan-out and delivery needs one. ``source`` is a session, or a session
    factory: then a session is opened only when the cache has no answer (opening and closing
    one costs CPU and, under load, a trip through the event loop's queue)."""
    candidates = language_candidates(language, merchant_language)
    cache_key = (campaign, tuple(candidates), merchant_id)
    now = time.monotonic()
    cached = _cache.get(cache_key)
    if cached is not None and cached[0] > now:
        return cached[1]
    if isinstance(source, AsyncSession):
        row = await _lookup(source, campaign, candidates, merchant_id)
    else:
        async with source() as session:
            row = await _lookup(session, campaign, candidates, merchant_id)
    _cache[cache_key] = (now + TEMPLATE_CACHE_SECONDS, row)
    return row


def clear_template_cache() -> None:
    _cache.clear()


async def _lookup(
    session: AsyncSession, campaign: str, candidates: list[str], merchant_id: int
) -> CampaignTemplate:
    rows = (
        await session.scalars(
            select(CampaignTemplate).where(
                CampaignTemplate.campaign == campaign,
                CampaignTemplate.language.in_(candidates),
                CampaignTemplate.merchant_scope.in_([merchant_id, 0]),
            )
        )
    ).all()
    for lang in candidates:
        for scope in (merchant_id, 0):
            for row in rows:
                if row.language == lang and row.merchant_scope == scope:
                    return row
    raise TemplateMissing(f"no template for campaign {campaign} in {', '.join(candidates)}")
