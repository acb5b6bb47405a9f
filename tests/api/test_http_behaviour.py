"""What every route shares: bearer auth, the error envelope for unknown routes, methods,
oversized and malformed bodies and unexpected failures, /healthz, /metrics and the OpenAPI."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from notifyflow import metrics
from notifyflow.api import directory_routes
from notifyflow.api.app import create_app
from notifyflow.api.errors import MAX_BODY_BYTES
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.db.tables import Notification
from tests.api.conftest import assert_envelope, client_for, make_settings, paths
from tests.fixtures.database import MerchantFactory, unique_phone

TOKEN = "s3cret-token-for-tests"


def merchant_body() -> dict[str, str]:
    return {"name": "Acme", "whatsapp_sender": unique_phone()}


# ---- auth -----------------------------------------------------------------------------------


async def test_bearer_token_guards_every_route_but_healthz(
    app_with: Callable[..., FastAPI],
) -> None:
    async with client_for(app_with(NOTIFYFLOW_API_TOKEN=TOKEN)) as api:
        for method, url in [
            ("POST", "/v1/merchants"),
            ("GET", "/v1/merchants/1/documents"),
            ("GET", "/v1/notifications"),
            ("GET", "/v1/notifications/NOTIF_1"),
            ("GET", "/metrics"),
            ("GET", "/docs"),
            ("GET", "/openapi.json"),
            # Unknown routes too: no mapping the API by probing for 404s.
            ("GET", "/v1/nothing-here"),
        ]:
            response = await api.request(method, url, json=merchant_body())
            assert_envelope(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")

        for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, ""):
            response = await api.post(
                "/v1/merchants", json=merchant_body(), headers={"Authorization": header}
            )
            assert_envelope(response, 401, "unauthorized")

        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            await api.post("/v1/merchants", json=merchant_body(), headers=ok)
        ).status_code == 201
        assert (await api.get("/metrics", headers=ok)).status_code == 200
        lower = {"Authorization": f"bearer {TOKEN}"}
        assert (await api.get("/openapi.json", headers=lower)).status_code == 200

        # Liveness and readiness probes carry no credentials.
        health = await api.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert (await api.get("/readyz")).status_code != 401


async def test_readyz_is_503_naming_temporal_while_it_is_away_and_healthz_stays_200(
    api: httpx.AsyncClient,
) -> None:
    # The session app's Temporal is an address nothing listens on.
    ready = await api.get("/readyz")
    details = assert_envelope(ready, 503, "not_ready")
    assert ready.json()["error"]["message"] == "not ready: temporal not answering"
    assert details == {"database": "ok", "temporal": "unreachable"}
    assert ready.headers["retry-after"] == "5"
    health = await api.get("/healthz")
    assert health.status_code == 200 and health.json()["temporal"] == "unreachable"


async def test_readyz_is_200_when_the_database_and_temporal_answer(db: Any, dev_env: Any) -> None:
    app = create_app(make_settings(), session_factory=db, temporal_client=dev_env.client)
    async with client_for(app) as api:
        ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": "ok", "temporal": "ok"}


async def test_without_a_token_no_auth_is_asked(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/merchants", json=merchant_body())).status_code == 201


async def test_openapi_documents_bearer_examples_and_the_envelope(
    app_with: Callable[..., FastAPI],
) -> None:
    async with client_for(app_with(NOTIFYFLOW_API_TOKEN=TOKEN)) as api:
        spec = (await api.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = spec["paths"]
    assert "security" not in operations["/healthz"]["get"]
    assert "security" not in operations["/readyz"]["get"]
    assert operations["/v1/merchants"]["post"]["security"] == [{"bearer": []}]
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    expected = {
        ("post", "/v1/merchants"),
        ("post", "/v1/merchants/{merchant_id}/users"),
        ("post", "/v1/merchants/{merchant_id}/documents"),
        ("get", "/v1/merchants/{merchant_id}/documents"),
        # Merchant API keys (DESIGN §9; tests/api/test_api_keys.py).
        ("post", "/v1/merchants/{merchant_id}/api-keys"),
        ("get", "/v1/merchants/{merchant_id}/api-keys"),
        ("delete", "/v1/merchants/{merchant_id}/api-keys/{key_id}"),
        # Directory maintenance (issue 18; tests/api/test_directory_maintenance.py).
        ("get", "/v1/merchants"),
        ("get", "/v1/merchants/{merchant_id}"),
        ("patch", "/v1/merchants/{merchant_id}"),
        ("delete", "/v1/merchants/{merchant_id}"),
        ("get", "/v1/merchants/{merchant_id}/users"),
        ("get", "/v1/merchants/{merchant_id}/users/{user_id}"),
        ("patch", "/v1/merchants/{merchant_id}/users/{user_id}"),
        ("delete", "/v1/merchants/{merchant_id}/users/{user_id}"),
        ("get", "/v1/merchants/{merchant_id}/documents/{document_id}"),
        ("patch", "/v1/merchants/{merchant_id}/documents/{document_id}"),
        ("delete", "/v1/merchants/{merchant_id}/documents/{document_id}"),
        ("get", "/v1/conversations"),
        ("get", "/v1/conversations/{conversation_id}"),
        ("patch", "/v1/conversations/{conversation_id}"),
        ("delete", "/v1/conversations/{conversation_id}"),
        ("put", "/v1/campaigns/{campaign}/templates/{language}"),
        ("post", "/v1/merchants/{merchant_id}/webhooks"),
        # Answer templates (DESIGN §10; tests/api/test_answer_templates.py).
        ("post", "/v1/merchants/{merchant_id}/answer-templates"),
        ("get", "/v1/merchants/{merchant_id}/answer-templates"),
        ("put", "/v1/merchants/{merchant_id}/answer-templates/{code}"),
        ("delete", "/v1/merchants/{merchant_id}/answer-templates/{code}"),
        ("get", "/v1/merchants/{merchant_id}/settings"),
        ("put", "/v1/merchants/{merchant_id}/settings"),
        ("get", "/v1/merchants/{merchant_id}/sla"),
        ("get", "/v1/merchants/{merchant_id}/webhooks"),
        ("delete", "/v1/merchants/{merchant_id}/webhooks/{webhook_id}"),
        ("post", "/v1/conversations"),
        ("post", "/v1/conversations/{conversation_id}/messages"),
        ("get", "/v1/conversations/{conversation_id}/messages"),
        ("post", "/v1/notifications"),
        ("get", "/v1/notifications"),
        ("get", "/v1/notifications/{notification_id}"),
        ("get", "/v1/notifications/{notification_id}/events"),
        ("post", "/v1/notifications/{notification_id}/customer-messages"),
        ("post", "/v1/notifications/{notification_id}/answer"),
        ("post", "/v1/notifications/{notification_id}/correct"),
        ("post", "/v1/notifications/{notification_id}/close"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        # Twilio's webhooks (tests/inbound): signed, so no bearer security on them.
        ("post", "/v1/webhooks/twilio/messages"),
        ("post", "/v1/webhooks/twilio/status"),
    }
    assert {(m, p) for p, ops in operations.items() for m in ops} == expected
    assert "security" not in operations["/v1/webhooks/twilio/messages"]["post"]
    schemas = spec["components"]["schemas"]
    for name in (
        "MerchantCreate",
        "NotificationRequest",
        "AnswerBody",
        "CorrectionBody",
        "CampaignTemplateBody",
        "AnswerTemplateCreate",
        "AnswerTemplateReplace",
        "MerchantUpdate",
        "MerchantUserUpdate",
        "DocumentUpdate",
        "ConversationUpdate",
    ):
        assert schemas[name]["examples"], name


# ---- the envelope for whatever goes wrong ---------------------------------------------------


async def test_unknown_route_and_method(api: httpx.AsyncClient) -> None:
    assert_envelope(await api.get("/v1/nope"), 404, "not_found")
    # A trailing slash is not silently redirected (a POST would be replayed as a GET).
    assert_envelope(await api.post("/v1/merchants/", json=merchant_body()), 404, "not_found")
    response = await api.delete("/v1/merchants")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_malformed_bodies(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/merchants", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert assert_envelope(response, 422, "invalid_input")[0]["path"] == "/"
    response = await api.post("/v1/merchants", json=["not", "an", "object"])
    assert_envelope(response, 422, "invalid_input")
    # JSON only: a form post is not quietly parsed.
    response = await api.post("/v1/merchants", data={"name": "Acme"})
    assert_envelope(response, 422, "invalid_input")


async def test_oversized_bodies_get_413_declared_or_streamed(api: httpx.AsyncClient) -> None:
    big = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await api.post(
        "/v1/merchants", content=big, headers={"content-type": "application/json"}
    )
    assert_envelope(response, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit is enforced as the body streams in.
        for _ in range(MAX_BODY_BYTES // 8192 + 2):
            yield b" " * 8192

    response = await api.post(
        "/v1/merchants", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413, "payload_too_large")

    # Just under the limit is read and validated as usual.
    fits = b'{"name": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
    response = await api.post(
        "/v1/merchants", content=fits, headers={"content-type": "application/json"}
    )
    assert_envelope(response, 422, "invalid_input")


async def test_unexpected_failure_is_a_500_envelope_and_logged(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(*_args: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(directory_routes.directory, "create_merchant", boom)
    with caplog.at_level(logging.ERROR, logger="notifyflow.api"):
        response = await api.post("/v1/merchants", json=merchant_body())
    assert_envelope(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert any("secret internal detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_database_down_is_503_and_healthz_still_answers() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        app = create_app(make_settings(), session_factory=session_factory(engine))
        async with client_for(app) as api:
            response = await api.post("/v1/merchants", json=merchant_body())
            assert_envelope(response, 503, "database_unavailable")
            assert "127.0.0.1" not in response.text
            health = await api.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {
                "status": "ok",
                "database": "unreachable",
                "temporal": "unreachable",
            }
            scrape = await api.get("/metrics")
            assert scrape.status_code == 200
            assert "notifyflow_database_up 0.0" in scrape.text
    finally:
        await engine.dispose()


async def test_notification_routes_answer_503_when_temporal_is_down(
    api: httpx.AsyncClient,
) -> None:
    # Input is checked first: a malformed request is refused even while Temporal is down.
    assert_envelope(
        await api.post("/v1/notifications/NOTIF_x/answer", json={"answered_by": 1, "answer": {}}),
        400,
        "malformed_id",
    )
    assert_envelope(
        await api.post(
            "/v1/notifications", json={"type": "nope", "conversation_id": 1, "context": {}}
        ),
        422,
        "unknown_type",
    )
    response = await api.post(
        "/v1/notifications",
        json={"type": "user_question_request", "conversation_id": 1, "context": {"question": "?"}},
    )
    assert_envelope(response, 503, "temporal_unavailable")
    assert response.headers["retry-after"]


# ---- health and metrics ---------------------------------------------------------------------


async def test_healthz_reports_database_and_temporal(
    db: SessionFactory,
    dev_env,
    api: httpx.AsyncClient,  # type: ignore[no-untyped-def]
) -> None:
    response = await api.get("/healthz")
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "unreachable"}
    app = create_app(make_settings(), temporal_client=dev_env.client, session_factory=db)
    async with client_for(app) as live:
        response = await live.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _value(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for l_, v in samples if all(l_.get(k) == x for k, x in labels.items()))


async def test_the_scrape_reads_only_open_notifications_and_the_parser_accepts_it(
    api: httpx.AsyncClient, db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    """History never reaches the scrape: a delivered notification changes no scraped figure;
    a waiting and a delivering one move the open gauge. Names follow Prometheus' rules."""
    before = _samples((await api.get("/metrics")).text)
    shop = await make_merchant(admins=1)
    async with db() as session:
        for status in ("delivered", "requested", "answered"):
            session.add(
                Notification(
                    type="user_question_request",
                    status=status,
                    merchant_id=shop.merchant_id,
                    conversation_id=shop.conversation_id,
                    context={"question": "?"},
                )
            )
        await session.commit()
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == metrics.CONTENT_TYPE
    after = _samples(response.text)
    assert after["notifyflow_database_up"] == [({}, 1.0)]

    def grew(status: str) -> float:
        name = "notifyflow_notifications_open"
        return _value(after.get(name, []), status=status) - _value(
            before.get(name, []), status=status
        )

    assert (grew("requested"), grew("answered"), grew("delivered")) == (1, 1, 0)
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith(("notifyflow_", "python_", "process_")), family.name
        if family.type == "counter":
            assert all(x.name.endswith(("_total", "_created")) for x in family.samples)
        else:
            assert not family.name.endswith("_total"), family.name
    # The scrape's own request is counted by route template.
    again = _samples((await api.get("/metrics")).text)
    assert (
        _value(
            again["notifyflow_http_requests_total"], method="GET", route="/metrics", status="200"
        )
        >= 1
    )


def test_a_scrape_without_the_database_still_answers() -> None:
    text = metrics.render(metrics.Snapshot(database_up=False)).decode()
    assert _samples(text)["notifyflow_database_up"] == [({}, 0.0)]


async def test_text_no_database_can_store_is_refused_with_its_path(api: httpx.AsyncClient) -> None:
    """NUL and lone surrogates are valid JSON escapes; they are refused before Temporal or the
    database sees them, and quoting them back in the envelope does not break the response."""

    def post(url: str, body: object) -> Any:
        return api.post(
            url, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )

    request = {"type": "user_question_request", "conversation_id": 1}
    cases = [
        ("/v1/notifications", {**request, "context": {"question": "a\x00b"}}, "/context/question"),
        (
            "/v1/notifications",
            {**request, "context": {"question": "ok", "x": ["\ud800"]}},
            "/context/x/0",
        ),
        (
            "/v1/notifications",
            {**request, "context": {"question": "ok", "\ud800": 1}},
            "/context/\ud800",
        ),
        (
            "/v1/notifications/NOTIF_1/answer",
            {"answered_by": 1, "answer": {"answer": "\x00"}},
            "/answer/answer",
        ),
        (
            "/v1/notifications/NOTIF_1/answer",
            {"answered_by": 1, "answer_json": '{"answer": "\\u0000"}'},
            "/answer_json/answer",
        ),
        (
            "/v1/notifications/NOTIF_1/correct",
            {"answered_by": 1, "answer": {"answer": "\x00"}},
            "/answer/answer",
        ),
    ]
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    cases.append(
        (
            "/v1/notifications",
            {**request, "context": {"question": "ok", "d": deep}},
            "/context/d" + "/0" * 31,
        )
    )
    for url, body, path in cases:
        response = await post(url, body)
        assert paths(assert_envelope(response, 422, "invalid_input")) == {path}, body
    response = await post("/v1/merchants", {"\ud800": 1, "name": "x", "whatsapp_sender": "+1"})
    assert_envelope(response, 422, "invalid_input")
