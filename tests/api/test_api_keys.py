"""Merchant API keys (DESIGN §9): create / list / revoke over HTTP and the CLI, what is stored,
immediate revocation across API processes, ``last_used_at`` without a write per request, the
open mode (no operator token) and input hardening of the Authorization header. The route ×
caller matrix is tests/api/test_access_matrix.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from notifyflow import api_keys
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import ApiKey, Notification
from notifyflow.db.types import utcnow
from tests.api.conftest import assert_envelope, client_for
from tests.api.test_cli import cli_env, error_of, run, run_async  # noqa: F401 - fixture
from tests.fixtures.database import MerchantFactory

TOKEN = "operator-token-for-key-tests"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}


def _fuzz_app() -> FastAPI:
    # No database behind it: every key-shaped value that passes the shape check would be 503,
    # and the property below expects the shape check to refuse random bytes first.
    from notifyflow.api.app import create_app
    from tests.api.conftest import make_settings

    return create_app(
        make_settings(
            NOTIFYFLOW_API_TOKEN=TOKEN,
            DATABASE_URL="postgresql+psycopg://nobody:pw@127.0.0.1:1/none",
        )
    )


_FUZZ_APP = _fuzz_app()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(api: httpx.AsyncClient, merchant_id: int) -> dict[str, Any]:
    response = await api.post(f"/v1/merchants/{merchant_id}/api-keys", headers=OPERATOR)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def secured(app_with: Callable[..., FastAPI]) -> FastAPI:
    return app_with(NOTIFYFLOW_API_TOKEN=TOKEN)


async def test_create_list_revoke_and_only_a_hash_is_stored(
    secured: FastAPI, make_merchant: MerchantFactory, db: SessionFactory
) -> None:
    shop = await make_merchant()
    async with client_for(secured) as api:
        created = await create_key(api, shop.merchant_id)
        assert set(created) == {"id", "merchant_id", "key", "prefix", "created_at"}
        key = created["key"]
        assert api_keys.KEY_PATTERN.fullmatch(key) and len(key) == api_keys.KEY_LENGTH
        assert key.startswith(created["prefix"]) and created["merchant_id"] == shop.merchant_id

        async with db() as session:
            row = await session.get(ApiKey, created["id"])
            assert row is not None
            stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
        secret = key[len(created["prefix"]) + 1 :]
        assert not any(secret in value or key in value for value in stored), stored
        assert row.key_hash == api_keys.hash_key(key)

        # The key works on its merchant's routes.
        own = await api.get(f"/v1/merchants/{shop.merchant_id}/documents", headers=bearer(key))
        assert own.status_code == 200, own.text

        listed = await api.get(f"/v1/merchants/{shop.merchant_id}/api-keys", headers=OPERATOR)
        assert listed.status_code == 200
        assert key not in listed.text and secret not in listed.text
        [entry] = listed.json()["items"]
        assert entry["id"] == created["id"] and entry["prefix"] == created["prefix"]
        assert entry["revoked_at"] is None and entry["last_used_at"] is not None

        revoked = await api.delete(
            f"/v1/merchants/{shop.merchant_id}/api-keys/{created['id']}", headers=OPERATOR
        )
        assert revoked.status_code == 204 and revoked.content == b""
        refused = await api.get(f"/v1/merchants/{shop.merchant_id}/documents", headers=bearer(key))
        assert_envelope(refused, 401, "unauthorized")
        [entry] = (
            await api.get(f"/v1/merchants/{shop.merchant_id}/api-keys", headers=OPERATOR)
        ).json()["items"]
        assert entry["revoked_at"] is not None
        # Revoking again changes nothing; an unknown key, or one of another merchant, is 404.
        again = await api.delete(
            f"/v1/merchants/{shop.merchant_id}/api-keys/{created['id']}", headers=OPERATOR
        )
        assert again.status_code == 204
        other = await make_merchant()
        assert_envelope(
            await api.delete(
                f"/v1/merchants/{other.merchant_id}/api-keys/{created['id']}", headers=OPERATOR
            ),
            404,
            "not_found",
        )
        assert_envelope(
            await api.delete(
                f"/v1/merchants/{shop.merchant_id}/api-keys/2147483000", headers=OPERATOR
            ),
            404,
            "not_found",
        )
        assert_envelope(
            await api.post("/v1/merchants/2147483000/api-keys", headers=OPERATOR), 404, "not_found"
        )


async def test_a_revoked_key_is_refused_by_every_api_process_at_once(
    app_with: Callable[..., FastAPI], make_merchant: MerchantFactory
) -> None:
    """Two API processes over one database: revoke through one, the other refuses the very
    next request (no cache to expire)."""
    shop = await make_merchant()
    first, second = app_with(NOTIFYFLOW_API_TOKEN=TOKEN), app_with(NOTIFYFLOW_API_TOKEN=TOKEN)
    url = f"/v1/merchants/{shop.merchant_id}/documents"
    async with client_for(first) as one, client_for(second) as two:
        created = await create_key(one, shop.merchant_id)
        assert (await two.get(url, headers=bearer(created["key"]))).status_code == 200
        revoked = await one.delete(
            f"/v1/merchants/{shop.merchant_id}/api-keys/{created['id']}", headers=OPERATOR
        )
        assert revoked.status_code == 204
        assert_envelope(await two.get(url, headers=bearer(created["key"])), 401, "unauthorized")


async def test_last_used_at_is_written_at_most_once_a_minute(
    secured: FastAPI, make_merchant: MerchantFactory, db: SessionFactory
) -> None:
    shop = await make_merchant()
    url = f"/v1/merchants/{shop.merchant_id}/documents"

    async def last_used(key_id: int) -> Any:
        async with db() as session:
            return await session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))

    async with client_for(secured) as api:
        created = await create_key(api, shop.merchant_id)
        assert await last_used(created["id"]) is None
        assert (await api.get(url, headers=bearer(created["key"]))).status_code == 200
        stamped = await last_used(created["id"])
        assert stamped is not None
        for _ in range(5):
            assert (await api.get(url, headers=bearer(created["key"]))).status_code == 200
        assert await last_used(created["id"]) == stamped  # no write per request

        long_ago = utcnow() - timedelta(minutes=5)
        async with db() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.id == created["id"]).values(last_used_at=long_ago)
            )
            await session.commit()
        assert (await api.get(url, headers=bearer(created["key"]))).status_code == 200
        assert await last_used(created["id"]) > long_ago + timedelta(minutes=4)


def _failures(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "notifyflow_auth_failures":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


async def test_malformed_credentials_are_401_counted_and_never_logged(
    secured: FastAPI,
    make_merchant: MerchantFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shop = await make_merchant()
    url = f"/v1/merchants/{shop.merchant_id}/documents"
    async with client_for(secured) as api:
        created = await create_key(api, shop.merchant_id)
        key = created["key"]
        revoked = await create_key(api, shop.merchant_id)
        await api.delete(
            f"/v1/merchants/{shop.merchant_id}/api-keys/{revoked['id']}", headers=OPERATOR
        )
        before = _failures((await api.get("/metrics", headers=OPERATOR)).text)
        wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        cases: list[tuple[list[tuple[bytes, bytes]], str]] = [
            ([], "missing"),
            ([(b"authorization", b"")], "malformed_header"),
            ([(b"authorization", b"Bearer")], "malformed_header"),
            ([(b"authorization", b"Bearer ")], "malformed_header"),
            ([(b"authorization", key.encode())], "malformed_header"),
            ([(b"authorization", b"Basic " + key.encode())], "malformed_header"),
            ([(b"authorization", b"Bearer " + key.encode() + b" extra")], "malformed_header"),
            ([(b"authorization", b"Bearer \xff\xfe" + key.encode())], "malformed_header"),
            ([(b"authorization", "Bearer nfk_ключ".encode())], "malformed_header"),
            ([(b"authorization", b"Bearer " + b"x" * 100_000)], "malformed_header"),
            ([(b"authorization", b"Bearer nfk_" + b"a" * 5000)], "malformed_header"),
            (
                [(b"authorization", b"Bearer " + key.encode())] * 2,
                "malformed_header",
            ),
            ([(b"authorization", b"Bearer not-the-token")], "invalid_token"),
            ([(b"authorization", f"Bearer {TOKEN}x".encode())], "invalid_token"),
            ([(b"authorization", b"Bearer nfk_")], "malformed_key"),
            ([(b"authorization", b"Bearer nfk_short")], "malformed_key"),
            ([(b"authorization", f"Bearer {key}A".encode())], "malformed_key"),
            ([(b"authorization", f"Bearer {key[:-1]}".encode())], "malformed_key"),
            ([(b"authorization", f"Bearer {key.upper()}".encode())], "invalid_token"),
            ([(b"authorization", f"Bearer {wrong_secret}".encode())], "unknown_key"),
            (
                [(b"authorization", f"Bearer nfk_{'0' * 12}_{'A' * 43}".encode())],
                "unknown_key",
            ),
            ([(b"authorization", f"Bearer {revoked['key']}".encode())], "revoked_key"),
        ]
        expected: dict[str, int] = {}
        with caplog.at_level(logging.WARNING, logger="notifyflow.api.auth"):
            for headers, reason in cases:
                status, body = await raw_get(secured, url, headers)
                assert status == 401, (headers, status, body)
                error = json.loads(body)["error"]
                assert error["code"] == "unauthorized", error
                expected[reason] = expected.get(reason, 0) + 1
        after = _failures((await api.get("/metrics", headers=OPERATOR)).text)
        assert {r: after.get(r, 0) - before.get(r, 0) for r in expected} == expected
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert "authentication refused (revoked_key)" in logged
        assert revoked["prefix"] in logged  # the public prefix helps an operator …
        for secret in (key, revoked["key"], TOKEN, key[len(created["prefix"]) + 1 :]):
            assert secret not in logged  # … the key itself is never written down
        # The key still works: none of the above disturbed it.
        assert (await api.get(url, headers=bearer(key))).status_code == 200


async def raw_get(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """A GET with exactly these header bytes, straight into the ASGI app (httpx would refuse
    to send some of them)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"notifyflow.test"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("notifyflow.test", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), body


async def test_without_an_operator_token_keys_still_scope(
    app_with: Callable[..., FastAPI], make_merchant: MerchantFactory, db: SessionFactory
) -> None:
    """NOTIFYFLOW_API_TOKEN unset: open as before, but a presented key scopes its request and
    a bad one is refused."""
    mine, theirs = await make_merchant(), await make_merchant()
    async with client_for(app_with()) as api:
        created = (await api.post(f"/v1/merchants/{mine.merchant_id}/api-keys")).json()
        key = bearer(created["key"])
        # No credentials at all, or a bearer that is not a key: today's behaviour.
        for headers in ({}, {"Authorization": "Bearer whatever"}, {"Authorization": "junk"}):
            response = await api.get(
                f"/v1/merchants/{theirs.merchant_id}/documents", headers=headers
            )
            assert response.status_code == 200, response.text
        assert (
            await api.get(f"/v1/merchants/{mine.merchant_id}/documents", headers=key)
        ).is_success
        missing = await api.get("/v1/merchants/2147483000/documents", headers=key)
        foreign = await api.get(f"/v1/merchants/{theirs.merchant_id}/documents", headers=key)
        assert_envelope(foreign, 404, "not_found")
        assert foreign.text == missing.text.replace("2147483000", str(theirs.merchant_id))
        assert_envelope(await api.get("/metrics", headers=key), 403, "forbidden")
        assert_envelope(
            await api.post(f"/v1/merchants/{mine.merchant_id}/api-keys", headers=key),
            403,
            "forbidden",
        )
        for bad in (
            "Bearer nfk_nope",
            f"Bearer nfk_{'0' * 12}_{'A' * 43}",
            "Bearer nfk_" + "x" * 4000,
            # A key in a header that is not the Bearer shape is refused, not ignored.
            f"Basic {created['key']}",
            f"Bearer {created['key']} trailing",
        ):
            response = await api.get(
                f"/v1/merchants/{mine.merchant_id}/documents", headers={"Authorization": bad}
            )
            assert_envelope(response, 401, "unauthorized")


async def test_list_filters_cannot_widen_a_keys_view(
    secured: FastAPI, make_merchant: MerchantFactory, db: SessionFactory
) -> None:
    """GET /v1/notifications with a merchant key: only its merchant's rows, whatever
    ``merchant_id`` says. (Rows written directly: no workflow is needed to list them.)"""
    mine, theirs = await make_merchant(), await make_merchant()
    async with db() as session:
        for shop in (mine, theirs):
            session.add(
                Notification(
                    type="user_question_request",
                    merchant_id=shop.merchant_id,
                    conversation_id=shop.conversation_id,
                    context={"question": f"question of merchant {shop.merchant_id}"},
                    answer_schema={},
                )
            )
        await session.commit()
    async with client_for(secured) as api:
        key = bearer((await create_key(api, mine.merchant_id))["key"])
        everything = await api.get("/v1/notifications", params={"limit": 500}, headers=key)
        assert everything.status_code == 200
        items = everything.json()["items"]
        assert items and {n["merchant_id"] for n in items} == {mine.merchant_id}
        asked_for_theirs = await api.get(
            "/v1/notifications", params={"merchant_id": theirs.merchant_id}, headers=key
        )
        assert asked_for_theirs.status_code == 200 and asked_for_theirs.json()["items"] == []
        both = await api.get("/v1/notifications", params={"limit": 500}, headers=OPERATOR)
        assert {mine.merchant_id, theirs.merchant_id} <= {
            n["merchant_id"] for n in both.json()["items"]
        }


async def test_answered_by_must_be_a_user_of_the_keys_merchant(
    secured: FastAPI, make_merchant: MerchantFactory, db: SessionFactory
) -> None:
    """403 before Temporal is even asked (this app has none): another merchant's admin and a
    user that does not exist read the same."""
    mine, theirs = await make_merchant(), await make_merchant()
    async with db() as session:
        row = Notification(
            type="user_question_request",
            merchant_id=mine.merchant_id,
            conversation_id=mine.conversation_id,
            context={"question": "q"},
            answer_schema={},
        )
        session.add(row)
        await session.commit()
        public = f"NOTIF_{row.id}"
    async with client_for(secured) as api:
        key = bearer((await create_key(api, mine.merchant_id))["key"])
        url = f"/v1/notifications/{public}/answer"
        answer = {"answer": {"answer": "Ten to four."}}
        foreign = await api.post(
            url, json={"answered_by": theirs.admin_ids[0], **answer}, headers=key
        )
        assert_envelope(foreign, 403, "not_allowed")
        missing = await api.post(url, json={"answered_by": 2147483000, **answer}, headers=key)
        assert_envelope(missing, 403, "not_allowed")
        assert foreign.text == missing.text.replace("2147483000", str(theirs.admin_ids[0]))
        # Both attempts are in the answer history, like every refused answer.
        view = (await api.get(f"/v1/notifications/{public}", headers=key)).json()
        assert [(a["accepted"], a["reason_code"]) for a in view["answers"]] == [
            (False, "not_allowed"),
            (False, "not_allowed"),
        ]
        assert [a["answered_by"] for a in view["answers"]] == [theirs.admin_ids[0], None]
        # Its own admin passes the check and reaches Temporal (which this app does not have).
        own = await api.post(url, json={"answered_by": mine.admin_ids[0], **answer}, headers=key)
        assert own.status_code == 503, own.text


# ---- CLI: notifyflow keys create | list | revoke --------------------------------------------


async def test_cli_keys_create_list_revoke(
    cli_env: None,  # noqa: F811 - the fixture imported above
    make_merchant: MerchantFactory,
    app_with: Callable[..., FastAPI],
) -> None:
    shop = await make_merchant()
    created = await run_async("keys", "create", "--merchant", str(shop.merchant_id), "--json")
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)
    assert api_keys.KEY_PATTERN.fullmatch(made["key"])

    plain = await run_async("keys", "create", "--merchant", str(shop.merchant_id))
    assert plain.exit_code == 0, plain.output
    second_key = plain.stdout.strip()
    assert api_keys.KEY_PATTERN.fullmatch(second_key) and "shown once" in plain.stderr

    listed = await run_async("keys", "list", "--merchant", str(shop.merchant_id), "--json")
    assert listed.exit_code == 0
    assert [k["id"] for k in json.loads(listed.stdout)][0] == made["id"]
    assert made["key"] not in listed.stdout and second_key not in listed.stdout
    table = await run_async("keys", "list", "--merchant", str(shop.merchant_id))
    assert table.exit_code == 0 and made["prefix"] in table.stdout

    async with client_for(app_with(NOTIFYFLOW_API_TOKEN=TOKEN)) as api:
        url = f"/v1/merchants/{shop.merchant_id}/documents"
        assert (await api.get(url, headers=bearer(made["key"]))).status_code == 200
        revoked = await run_async("keys", "revoke", str(made["id"]), "--json")
        assert revoked.exit_code == 0, revoked.output
        assert json.loads(revoked.stdout)["revoked_at"] is not None
        assert_envelope(await api.get(url, headers=bearer(made["key"])), 401, "unauthorized")
        assert (await api.get(url, headers=bearer(second_key))).status_code == 200


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["keys", "create", "--merchant", "0"], "invalid_input"),
        (["keys", "list", "--merchant", "-3"], "invalid_input"),
        (["keys", "revoke", "0"], "invalid_input"),
        (["keys", "create", "--merchant", "2147483000"], "not_found"),
        (["keys", "list", "--merchant", "2147483000"], "not_found"),
        (["keys", "revoke", "2147483000"], "not_found"),
    ],
    ids=" ".join,
)
def test_cli_keys_refusals_exit_2(
    cli_env: None,  # noqa: F811
    args: list[str],
    code: str,
) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    result = run(*args, "--json")
    assert result.exit_code == 2 and error_of(result)["code"] == code


def test_cli_keys_database_unreachable_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifyflow.config import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        result = run("keys", "list", "--merchant", "1", "--json")
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert error_of(result)["code"] == "database_error"


async def test_a_key_that_cannot_be_checked_is_503_not_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database is away: a key cannot be checked (503 with Retry-After); nothing crashes."""
    from notifyflow.api.app import create_app
    from tests.api.conftest import make_settings

    app = create_app(
        make_settings(
            NOTIFYFLOW_API_TOKEN=TOKEN,
            DATABASE_URL="postgresql+psycopg://nobody:pw@127.0.0.1:1/none",
        )
    )
    key = f"nfk_{'0' * 12}_{'A' * 43}"
    async with client_for(app) as api:
        response = await api.get("/v1/merchants/1/documents", headers=bearer(key))
        assert_envelope(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "5"
        # The operator token needs no database to be recognised.
        assert (await api.get("/openapi.json", headers=OPERATOR)).status_code == 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=200).map(lambda b: b"Bearer " + b),
        st.binary(max_size=200).map(lambda b: b"Bearer nfk_" + b),
        st.text(max_size=80).map(lambda t: f"bearer nfk_{t}".encode()),
    )
)
async def test_any_authorization_header_is_401_never_500(value: bytes) -> None:
    """Whatever bytes the header holds (a server passes any but CR/LF/NUL), the answer is the
    401 envelope, or 503 if a well-shaped key meets no database — never a 500."""
    value = value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
    status, body = await raw_get(
        _FUZZ_APP, "/v1/merchants/1/documents", [(b"authorization", value)]
    )
    assert status == 401, (value, status, body)
    assert json.loads(body)["error"]["code"] == "unauthorized"
