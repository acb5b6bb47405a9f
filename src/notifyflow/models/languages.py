"""Language tags (BCP 47) by ``langcodes``: validation, the canonical form the database stores,
and the fallback chain a template lookup walks.

Pure functions, no I/O: safe to import from workflow code.
"""

from __future__ import annotations

import re

import langcodes
from langcodes.tag_parser import LanguageTagError

# The column is String(16); a longer tag is refused before langcodes sees it (and the cheap
# shape check keeps pathological input away from the parser).
MAX_TAG_LENGTH = 16
_SHAPE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
# Codes that name no language: undetermined, multiple, no linguistic content, uncoded.
_NOT_A_LANGUAGE = {"und", "mul", "zxx", "mis"}
# Languages a reader of one reads in the other: Norwegian Bokmål is what "Norwegian" (no)
# means in practice, and content is tagged either way.
_EQUIVALENT: dict[str, tuple[str, ...]] = {"nb": ("no",), "no": ("nb",)}

_MESSAGE = "must be a language tag (BCP 47) like 'en', 'es', 'pt-BR' or 'zh-Hant'"


def normalize_language(value: str) -> str:
    """The canonical form of a valid tag: ``pt_br`` → ``pt-BR``, ``zh-hant-tw`` →
    ``zh-Hant-TW``, ``iw`` → ``he``, ``en-Latn-US`` → ``en-US``. Raises ``ValueError`` for a
    tag that is malformed, names no registered language (``xx``) or no language at all
    (``und``).

    Canonical matters: template lookup compares tags as strings.
    """
    text = value.strip().replace("_", "-")
    if len(text) > MAX_TAG_LENGTH or not _SHAPE.match(text) or not langcodes.tag_is_valid(text):
        raise ValueError(_MESSAGE)
    try:
        tag = langcodes.standardize_tag(text)
    except (LanguageTagError, ValueError):
        raise ValueError(_MESSAGE) from None
    primary = langcodes.Language.get(tag).language
    if primary is None or primary in _NOT_A_LANGUAGE or len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"{_MESSAGE}, naming one language")
    return tag


def _truncations(tag: str) -> list[str]:
    """RFC 4647 lookup: drop subtags from the end (a singleton goes with what follows it)."""
    parts = tag.split("-")
    found = []
    while parts:
        found.append("-".join(parts))
        parts.pop()
        if len(parts) > 1 and len(parts[-1]) == 1:
            parts.pop()
    return found


def language_fallbacks(tag: str) -> list[str]:
    """The tags to try, best first, for content in ``tag``:

    - ``zh-Hant-TW`` → ``zh-Hant-TW, zh-Hant, zh``; ``pt-BR`` → ``pt-BR, pt``;
    - a region that implies a script the language does not default to gets it:
      ``zh-TW`` → ``zh-TW, zh-Hant-TW, zh-Hant, zh``;
    - equivalent languages follow at each level: ``nb-NO`` → ``nb-NO, no-NO, nb, no``.

    The caller appends its own last resorts (the merchant's default, ``en``). A tag that is not
    valid is tried as given and nothing else.
    """
    try:
        canonical = normalize_language(tag)
    except ValueError:
        return [tag.strip()] if tag.strip() else []
    language = langcodes.Language.get(canonical)
    tags = [canonical]
    if language.territory and not language.script:
        likely = language.maximize().script
        default = langcodes.Language.get(language.language or "").maximize().script
        if likely and likely != default:
            tags.append(str(language.update_dict({"script": likely})))
    chain: list[str] = []
    levels = [_truncations(t) for t in tags]
    for level in levels:
        for candidate in level:
            for variant in (candidate, *_aliases(candidate)):
                if variant not in chain:
                    chain.append(variant)
    # The tag itself first, then narrower before broader: zh-Hant-TW before zh-Hant and zh.
    return chain[:1] + sorted(chain[1:], key=lambda t: -t.count("-"))


def _aliases(tag: str) -> list[str]:
    primary, _, rest = tag.partition("-")
    return [f"{alias}-{rest}" if rest else alias for alias in _EQUIVALENT.get(primary, ())]
