"""Phones by ``phonenumbers`` and language tags by ``langcodes`` (issue 18): the pure parts."""

from __future__ import annotations

import pytest

from notifyflow.models.directory import check_country, normalize_phone, phone_input
from notifyflow.models.languages import language_fallbacks, normalize_language


@pytest.mark.parametrize(
    ("tag", "chain"),
    [
        ("zh-Hant-TW", ["zh-Hant-TW", "zh-Hant", "zh"]),
        ("zh-TW", ["zh-TW", "zh-Hant-TW", "zh-Hant", "zh"]),
        ("zh-CN", ["zh-CN", "zh"]),
        ("nb", ["nb", "no"]),
        ("no", ["no", "nb"]),
        ("nb-NO", ["nb-NO", "no-NO", "nb", "no"]),
        ("pt-BR", ["pt-BR", "pt"]),
        ("pt_br", ["pt-BR", "pt"]),
        ("es-419", ["es-419", "es"]),
        ("en", ["en"]),
        ("iw", ["he"]),
    ],
)
def test_language_fallbacks(tag: str, chain: list[str]) -> None:
    assert language_fallbacks(tag) == chain


def test_language_fallbacks_of_an_invalid_tag_is_the_tag_alone() -> None:
    assert language_fallbacks(" xx ") == ["xx"]
    assert language_fallbacks("") == []


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("EN", "en"),
        ("pt_br", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("en-Latn-US", "en-US"),
        ("iw", "he"),
        (" es ", "es"),
    ],
)
def test_normalize_language(given: str, canonical: str) -> None:
    assert normalize_language(given) == canonical


@pytest.mark.parametrize("bad", ["xx", "und", "mul", "english", "e", "?", "en-", "a" * 20, ""])
def test_normalize_language_refuses(bad: str) -> None:
    with pytest.raises(ValueError, match="language tag"):
        normalize_language(bad)


@pytest.mark.parametrize(
    ("given", "country", "e164"),
    [
        ("+1 (415) 555-0100", None, "+14155550100"),
        ("whatsapp:+34 612 34 56 78", None, "+34612345678"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("07911 123456", "GB", "+447911123456"),
        ("+34612345678", "US", "+34612345678"),  # international wins over the country
    ],
)
def test_normalize_phone(given: str, country: str | None, e164: str) -> None:
    assert normalize_phone(given, country) == e164


@pytest.mark.parametrize(
    ("bad", "country", "why"),
    [
        ("+1 415 555", None, "impossible phone number: it is too short"),
        ("+1 415 555 0100 99", None, "impossible phone number: it is too long"),
        ("+999 1234 5678", None, "not a phone number"),
        ("555 0100", "US", "impossible phone number"),
        ("4155550100", None, "national number needs the merchant's country"),
        ("+1 800 FLOWERS", None, "digits, spaces, dots, dashes and brackets only"),
        ("+1 415 555 0100 ext. 7", None, "digits, spaces"),
    ],
)
def test_normalize_phone_refuses_impossible_numbers(
    bad: str, country: str | None, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_phone(bad, country)


def test_phone_input_keeps_a_national_number_for_the_directory() -> None:
    assert phone_input("(415) 555-0100") == "4155550100"
    assert phone_input("whatsapp:+1 415 555 0100") == "+14155550100"
    with pytest.raises(ValueError):
        phone_input("+1 415")


def test_check_country() -> None:
    assert check_country(" es ") == "ES"
    for bad in ("", "XX", "ESP", "Spain"):
        with pytest.raises(ValueError, match="ISO 3166-1"):
            check_country(bad)


def test_template_lookup_walks_the_language_chain_then_the_merchant_default_then_en() -> None:
    from notifyflow.outreach.templates import language_candidates

    assert language_candidates("zh-Hant-TW", "es") == ["zh-Hant-TW", "zh-Hant", "zh", "es", "en"]
    assert language_candidates("pt-BR", None) == ["pt-BR", "pt", "en"]
    assert language_candidates("nb", "en")[:2] == ["nb", "no"]
    assert language_candidates(None, "es-MX") == ["es-MX", "es", "en"]
