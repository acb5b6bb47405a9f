"""Phones and languages through the directory routes (issue 18): national formats with the
merchant's country, a 422 naming the field for an impossible number or an invalid tag."""

from __future__ import annotations

import secrets

import httpx

from tests.api.conftest import assert_envelope, paths
from tests.fixtures.database import unique_phone


def us_phone() -> tuple[str, str]:
    """A fresh possible US number: (national as typed, E.164)."""
    digits = f"{secrets.randbelow(10**7):07d}"
    return f"(212) {digits[:3]}-{digits[3:]}", f"+1212{digits}"


async def test_a_merchant_with_a_country_takes_national_numbers(api: httpx.AsyncClient) -> None:
    sender_national, sender = us_phone()
    response = await api.post(
        "/v1/merchants",
        json={"name": "Acme", "whatsapp_sender": sender_national, "country": "us"},
    )
    assert response.status_code == 201, response.text
    merchant = response.json()
    assert merchant["whatsapp_sender"] == f"whatsapp:{sender}" and merchant["country"] == "US"

    national, e164 = us_phone()
    user = await api.post(
        f"/v1/merchants/{merchant['id']}/users",
        json={"name": "Ana", "phone": national, "user_type": "admin"},
    )
    assert user.status_code == 201, user.text
    assert user.json()["phone"] == e164
    # The same number in international format is the same phone.
    again = await api.post(
        f"/v1/merchants/{merchant['id']}/users",
        json={"name": "Ana again", "phone": e164, "user_type": "admin"},
    )
    assert_envelope(again, 409, "conflict")

    national, e164 = us_phone()
    conversation = await api.post(
        "/v1/conversations",
        json={"merchant_id": merchant["id"], "channel": "whatsapp", "customer_phone": national},
    )
    assert conversation.status_code == 201, conversation.text
    assert conversation.json()["customer_phone"] == e164


async def test_national_numbers_need_a_country(api: httpx.AsyncClient) -> None:
    national, _ = us_phone()
    response = await api.post("/v1/merchants", json={"name": "Acme", "whatsapp_sender": national})
    details = assert_envelope(response, 422, "invalid_input")
    assert paths(details) == {"/whatsapp_sender"}
    assert "no country" in response.json()["error"]["message"]

    merchant = await api.post(
        "/v1/merchants", json={"name": "Acme", "whatsapp_sender": unique_phone()}
    )
    assert merchant.status_code == 201, merchant.text
    assert merchant.json()["country"] is None
    user = await api.post(
        f"/v1/merchants/{merchant.json()['id']}/users",
        json={"name": "Bo", "phone": national, "user_type": "admin"},
    )
    assert paths(assert_envelope(user, 422, "invalid_input")) == {"/phone"}


async def test_impossible_numbers_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/merchants", json={"name": "Acme", "whatsapp_sender": "+1 212 555", "country": "US"}
    )
    assert paths(assert_envelope(response, 422)) == {"/whatsapp_sender"}
    assert "impossible phone number" in response.text and "too short" in response.text

    merchant = (
        await api.post(
            "/v1/merchants",
            json={"name": "Acme", "whatsapp_sender": unique_phone(), "country": "ES"},
        )
    ).json()
    for phone in ("+44 1", "12", "612 34 56 78 90 12"):
        user = await api.post(
            f"/v1/merchants/{merchant['id']}/users",
            json={"name": "Bo", "phone": phone, "user_type": "admin"},
        )
        assert paths(assert_envelope(user, 422)) == {"/phone"}, phone
    conversation = await api.post(
        "/v1/conversations",
        json={"merchant_id": merchant["id"], "channel": "whatsapp", "customer_phone": "+999 12"},
    )
    assert paths(assert_envelope(conversation, 422)) == {"/customer_phone"}


async def test_countries_and_language_tags_are_checked(api: httpx.AsyncClient) -> None:
    bad_country = await api.post(
        "/v1/merchants", json={"name": "Acme", "whatsapp_sender": unique_phone(), "country": "XX"}
    )
    assert paths(assert_envelope(bad_country, 422)) == {"/country"}
    for tag in ("xx", "und", "zz-ZZ"):
        response = await api.post(
            "/v1/merchants",
            json={"name": "Acme", "whatsapp_sender": unique_phone(), "default_language": tag},
        )
        assert paths(assert_envelope(response, 422)) == {"/default_language"}, tag
    response = await api.post(
        "/v1/merchants",
        json={"name": "Acme", "whatsapp_sender": unique_phone(), "default_language": "zh-hant-tw"},
    )
    assert response.status_code == 201 and response.json()["default_language"] == "zh-Hant-TW"
    merchant_id = response.json()["id"]
    conversation = await api.post(
        "/v1/conversations",
        json={
            "merchant_id": merchant_id,
            "channel": "whatsapp",
            "customer_phone": unique_phone(),
            "language": "iw",
        },
    )
    assert conversation.status_code == 201 and conversation.json()["language"] == "he"
