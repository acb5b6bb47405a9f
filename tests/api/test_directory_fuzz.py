"""Property: whatever junk a client sends to the directory routes, the answer is a 4xx with the
error envelope — never a 5xx — and not a single row is written."""

from __future__ import annotations

import json
from typing import Any

import pytest_asyncio
from fastapi import FastAPI
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    CampaignTemplate,
    Conversation,
    ConversationUser,
    Document,
    Merchant,
    MerchantUser,
    Message,
)
from notifyflow.models.directory import (
    CampaignTemplateBody,
    ConversationCreate,
    DocumentCreate,
    MerchantCreate,
    MerchantUserCreate,
    MessageCreate,
)
from tests.api.conftest import assert_envelope, client_for
from tests.fixtures.seeds import SEED

TABLES = (
    Merchant,
    MerchantUser,
    Document,
    Conversation,
    ConversationUser,
    Message,
    CampaignTemplate,
)

NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "🙂" * 70,
        "x" * 5000,
        "+",
        "+0",
        "+1 (415) 555",
        "whatsapp:",
        "whatsapp:+1",
        "+999999999999999999",
        "Europe/../../etc/passwd",
        "/etc/passwd",
        "UTC\x00",
        "en-",
        "--",
        "{{1}}",
        "{{0}}",
        "{{1",
        "HX",
        "NaN",
        "null",
        "1e309",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2024-02-30T00:00:00Z",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | NASTY_TEXT
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8) | NASTY_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)

# Values close to valid, so validation is probed at its edges and not only at its door.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["Acme", "  Acme  ", "A" * 200, "A" * 201]),
    "whatsapp_sender": st.sampled_from(["+14155550100", "whatsapp:+14155550100", "4155550100"]),
    "phone": st.sampled_from(["+14155550100", "+1 415 555 0100", "14155550100", "+1415"]),
    "customer_phone": st.sampled_from(["+14155550100", "555-0100"]),
    "instagram_user_id": st.sampled_from(["1784", "ig 1784", ""]),
    "user_type": st.sampled_from(["admin", "Admin", "sales team", "returns"]),
    "on_call": st.sampled_from([True, False, "yes", 2]),
    "default_language": st.sampled_from(["en", "pt-BR", "e", "english"]),
    "language": st.sampled_from(["es", "zz-ZZZZZZZZZ", "1"]),
    "timezone": st.sampled_from(["UTC", "Europe/Madrid", "Mars/Base", ""]),
    "category": st.sampled_from(["UserQuestion", "", "x" * 65]),
    "title": st.sampled_from(["Hours?", "", "  "]),
    "content": st.sampled_from(["9 to 5", "", "   "]),
    "merchant_id": st.sampled_from([1, 0, -1, 2**31, 2**63, "1"]),
    "channel": st.sampled_from(["whatsapp", "instagram", "sms", ""]),
    "role": st.sampled_from(["user", "assistant", "system", "USER"]),
    "created_at": st.sampled_from(
        ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "2999-01-01T00:00:00Z", "yesterday"]
    ),
    "content_sid": st.sampled_from(["HX" + "a" * 32, "HX" + "g" * 32, "MG" + "a" * 32]),
    "body": st.sampled_from(["Hi {{1}}.", "Hi {{2}}.", "{{1}}", "Hi {{1}} {{3}}."]),
}

ROUTES: dict[str, tuple[str, str, type[BaseModel]]] = {
    "merchant": ("POST", "/v1/merchants", MerchantCreate),
    "user": ("POST", "/v1/merchants/{merchant}/users", MerchantUserCreate),
    "document": ("POST", "/v1/merchants/{merchant}/documents", DocumentCreate),
    "conversation": ("POST", "/v1/conversations", ConversationCreate),
    "message": ("POST", "/v1/conversations/{conversation}/messages", MessageCreate),
    "template": ("PUT", "/v1/campaigns/{campaign}/templates/{language}", CampaignTemplateBody),
}

PATH_IDS = st.sampled_from(
    ["0", "-1", "2147483648", "99999999999999999999", "abc", "1.5", "%20", "2147483000"]
)


def _valid(model: type[BaseModel], body: Any) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """(method, url, request kwargs) that must be refused."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    method, template, model = ROUTES[route]
    real_path = draw(st.booleans())
    url = template.format(
        merchant="{merchant}" if real_path else draw(PATH_IDS),
        conversation="{conversation}" if real_path else draw(PATH_IDS),
        campaign=draw(st.sampled_from(["notification_closed", "nope", "%00"])),
        language=draw(st.sampled_from(["en", "pt-BR", "xx_yy", "e", "english"])),
    )
    kind = draw(st.sampled_from(["junk", "fields", "raw"]))
    if kind == "raw":
        raw = draw(st.binary(max_size=64) | st.sampled_from([b"{", b"[]", b"null", b'{"a":1e999}']))
        ctype = draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        )
        return method, url, {"content": raw, "headers": {"content-type": ctype}}
    if kind == "junk":
        body = draw(JUNK)
    else:
        names = list(model.model_fields)
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        body = {
            name: draw(
                PLAUSIBLE.get(name, JUNK) | JUNK
                if draw(st.booleans())
                else PLAUSIBLE.get(name, JUNK)
            )
            for name in chosen
        }
        if draw(st.booleans()):
            body[draw(st.text(max_size=6) | NASTY_TEXT)] = draw(JUNK)
    # The property is about refusals: a body its model accepts is not junk.
    assume(not _valid(model, body))
    return (
        method,
        url,
        {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json"}},
    )


async def _counts(db: SessionFactory) -> tuple[int, ...]:
    async with db() as session:
        return tuple(
            [int(await session.scalar(select(func.count()).select_from(t)) or 0) for t in TABLES]
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def targets(api_app: FastAPI) -> dict[str, int]:
    """A real merchant and conversation, so junk is also sent where the path is valid."""
    from tests.fixtures.database import unique_phone

    async with client_for(api_app) as api:
        merchant = (
            await api.post(
                "/v1/merchants", json={"name": "Fuzz", "whatsapp_sender": unique_phone()}
            )
        ).json()
        conversation = (
            await api.post(
                "/v1/conversations",
                json={
                    "merchant_id": merchant["id"],
                    "channel": "whatsapp",
                    "customer_phone": unique_phone(),
                },
            )
        ).json()
    return {"merchant": merchant["id"], "conversation": conversation["id"]}


@seed(SEED)
@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
async def test_junk_is_refused_with_an_envelope_and_writes_nothing(
    api_app: FastAPI,
    db: SessionFactory,
    targets: dict[str, int],
    case: tuple[str, str, dict[str, Any]],
) -> None:
    method, url, kwargs = case
    url = url.replace("{merchant}", str(targets["merchant"])).replace(
        "{conversation}", str(targets["conversation"])
    )
    before = await _counts(db)
    async with client_for(api_app) as api:
        response = await api.request(method, url, **kwargs)
    assert 400 <= response.status_code < 500, (method, url, kwargs, response.text)
    assert_envelope(response, response.status_code)
    assert await _counts(db) == before, (method, url, kwargs)
