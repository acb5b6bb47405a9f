"""Only Twilio gets in: every webhook must be signed with the auth token over the public URL;
anything else is a 403 envelope and stores nothing. No bearer token is needed."""

from __future__ import annotations

from typing import Any

import pytest

from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from tests.api.conftest import assert_envelope, client_for
from tests.fixtures.lifecycle import Shop
from tests.inbound.conftest import (
    MESSAGES,
    PUBLIC_URL,
    SENDER,
    STATUS,
    Inbound,
    Webhooks,
    events,
    inbound_settings,
    new_sid,
    stored,
)


@pytest.fixture
async def shop(shop_factory: Any) -> Shop:
    made: Shop = await shop_factory()
    return made


def _form(shop: Shop, sid: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "From": f"whatsapp:{shop.customer_phone}",
        "To": SENDER,
        "Body": "Hello?",
    }


@pytest.mark.parametrize(
    "signature",
    ["", "bm90IGEgc2lnbmF0dXJl", "other-url", "other-token", "tampered"],
    ids=["missing", "garbage", "signed-for-another-url", "signed-with-another-token", "tampered"],
)
async def test_a_badly_signed_message_is_refused_and_nothing_is_stored(
    inbound: Inbound, db: SessionFactory, shop: Shop, signature: str
) -> None:
    sid = new_sid()
    form = _form(shop, sid)
    headers: dict[str, str] = {}
    if signature == "other-url":
        signature = Webhooks(inbound.http).sign("/v1/webhooks/twilio/status", form)
    elif signature == "other-token":
        signature = Webhooks(inbound.http, token="not-the-token").sign(MESSAGES, form)
    elif signature == "tampered":
        signature = inbound.twilio.sign(MESSAGES, form)
        form = {**form, "Body": "Hello? Also, refund me twice."}
    if signature:
        headers["X-Twilio-Signature"] = signature
    response = await inbound.http.post(MESSAGES, data=form, headers=headers)
    assert_envelope(response, 403, "forbidden")
    assert "X-Twilio-Signature" in response.json()["error"]["message"]
    assert await stored(db, sid) == []
    assert await events(db, sid) == []


async def test_a_badly_signed_status_callback_is_refused(
    inbound: Inbound, db: SessionFactory
) -> None:
    sid = new_sid()
    response = await inbound.twilio.post(
        STATUS, {"MessageSid": sid, "MessageStatus": "delivered"}, signature="bm9wZQ=="
    )
    assert_envelope(response, 403, "forbidden")
    assert await events(db, sid) == []


async def test_without_an_auth_token_every_webhook_is_refused_with_a_clear_reason(
    db: SessionFactory, task_queue: str, shop: Shop
) -> None:
    app = create_app(inbound_settings(task_queue, TWILIO_AUTH_TOKEN=""), session_factory=db)
    async with client_for(app) as http:
        sid = new_sid()
        for path in (MESSAGES, STATUS):
            response = await Webhooks(http).post(path, _form(shop, sid))
            assert_envelope(response, 403, "forbidden")
            assert "TWILIO_AUTH_TOKEN is not set" in response.json()["error"]["message"]
    assert await stored(db, sid) == []


async def test_webhooks_need_no_bearer_token_and_the_query_string_is_signed(
    dev_env: Any, db: SessionFactory, task_queue: str, shop: Shop
) -> None:
    settings = inbound_settings(task_queue, NOTIFYFLOW_API_TOKEN="s3cret")
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    async with client_for(app) as http:
        # The rest of the API is closed…
        assert_envelope(await http.get("/v1/notifications"), 401, "unauthorized")
        # …the webhooks are open to a valid signature, which covers the query string too.
        sid = new_sid()
        form = _form(shop, sid)
        path = f"{MESSAGES}?source=twilio"
        signature = Webhooks(http).sign(path, form)
        response = await http.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        assert "<Response>" in response.text
        # Signed without the query: refused.
        other = new_sid()
        unsigned_query = Webhooks(http).sign(MESSAGES, _form(shop, other))
        response = await http.post(
            path, data=_form(shop, other), headers={"X-Twilio-Signature": unsigned_query}
        )
        assert_envelope(response, 403, "forbidden")
    assert [m.content for m in await stored(db, sid)] == ["Hello?"]
    assert await stored(db, other) == []
    assert PUBLIC_URL.startswith("https://")


async def test_a_signed_form_without_its_fields_is_a_422_not_a_500(inbound: Inbound) -> None:
    response = await inbound.twilio.post(MESSAGES, {"Body": "no sid"})
    details = assert_envelope(response, 422, "invalid_input")
    assert details[0]["path"] == "/MessageSid"
    response = await inbound.twilio.post(STATUS, {"MessageSid": new_sid()})
    details = assert_envelope(response, 422, "invalid_input")
    assert details[0]["path"] == "/MessageStatus"


async def test_while_temporal_is_down_an_admin_message_is_refused_for_a_retry(
    db: SessionFactory, task_queue: str, shop: Shop
) -> None:
    """An admin's message needs its workflow started before it is recorded: with Temporal down
    the webhook answers 503 and stores nothing, so Twilio's retry finds it undone. A customer's
    message needs no Temporal and is stored at once."""
    app = create_app(
        inbound_settings(task_queue, TEMPORAL_ADDRESS="127.0.0.1:1"), session_factory=db
    )
    async with client_for(app) as http:
        hooks = Webhooks(http)
        response, sid = await hooks.message(sender=shop.admins[0].phone, body="We open at 9")
        assert_envelope(response, 503, "temporal_unavailable")
        assert await stored(db, sid) == [] and await events(db, sid) == []
        response, sid = await hooks.message(sender=shop.customer_phone, body="Hello?")
        assert response.status_code == 200
        assert len(await stored(db, sid)) == 1
