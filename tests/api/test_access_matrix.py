"""Access per merchant (DESIGN §9): every route × every kind of caller, against the real
workflow on the real dev server.

The routes come from the app's own OpenAPI document (and the app's route table, for the few it
serves outside it: /docs, /openapi.json, …). Each must have a row in ``ROUTES`` saying who may
call it and how to build a request; a route without one fails the test, so a new route cannot
escape the matrix. The callers:

- ``operator``: the NOTIFYFLOW_API_TOKEN bearer;
- ``own``: a key of merchant A, whose data every request targets;
- ``other``: a key of merchant B;
- ``revoked``: a revoked key of merchant A;
- ``none``: no Authorization header.

For every cell the status is asserted; for B's key, a revoked key and no key, the body must not
name A's data (its name, phones, texts, ids — beyond the ids the request itself carried); and a
404 given to B's key must be byte for byte the body a truly missing id gets. Finally the added
latency of key authentication is measured against the operator token, side by side.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.routing import Route

from notifyflow import answer_templates, api_keys, directory
from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from notifyflow.models.answer_templates import AnswerTemplateCreate
from notifyflow.models.directory import (
    ConversationCreate,
    DocumentCreate,
    MerchantCreate,
    MerchantUserCreate,
)
from notifyflow.models.notification import NotificationType
from notifyflow.webhooks import subscriptions
from notifyflow.webhooks.events import EventType
from notifyflow.webhooks.subscriptions import WebhookCreate
from tests.api.conftest import client_for
from tests.figures import figure
from tests.fixtures.database import MadeMerchant, MerchantFactory, unique_phone
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for

TOKEN = "operator-token-for-the-access-matrix"
CALLERS = ("operator", "own", "other", "revoked", "none")
# Ids that exist nowhere: the "truly missing" twin of each 404.
MISSING_ID = 2147483000
MISSING_NOTIFICATION = f"NOTIF_{MISSING_ID}"
# Nothing listens there: the matrix only subscribes and never delivers.
WEBHOOK_URL = "http://127.0.0.1:9/hooks"
Access = Literal["open", "operator", "merchant", "any"]


@dataclass
class Req:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


@dataclass
class World:
    app: FastAPI
    api: httpx.AsyncClient
    db: SessionFactory
    a: MadeMerchant
    b: MadeMerchant
    headers: dict[str, dict[str, str]]
    notification: str  # A's notification, open and routed
    document_id: int
    token: str  # unique text in A's name, question and document
    secrets: set[str] = field(default_factory=set)
    ids: set[int] = field(default_factory=set)
    delivered: str | None = None  # A's notification, answered and delivered (corrections)

    async def fresh_notification(self) -> str:
        """A new, routed notification of A's (answer and close change its state)."""
        response = await self.api.post(
            "/v1/notifications",
            json={
                "type": "user_question_request",
                "conversation_id": self.a.conversation_id,
                "context": {"question": f"Secret question {self.token}?"},
            },
            headers=self.headers["operator"],
        )
        assert response.status_code == 202, response.text
        public: str = response.json()["notification_id"]
        await until_routed(self.api, public, self.headers["operator"])
        self.ids.add(int(public.removeprefix("NOTIF_")))
        return public


async def until_routed(api: httpx.AsyncClient, public: str, headers: dict[str, str]) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        body = (await api.get(f"/v1/notifications/{public}", headers=headers)).json()
        if body["recipients"]:
            return
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


@dataclass
class Cell:
    """How to build a route's request: ``missing`` targets ids that do not exist."""

    world: World
    missing: bool

    @property
    def merchant_id(self) -> int:
        return MISSING_ID if self.missing else self.world.a.merchant_id

    @property
    def conversation_id(self) -> int:
        return MISSING_ID if self.missing else self.world.a.conversation_id

    async def notification(self, *, fresh: bool = False) -> str:
        if self.missing:
            return MISSING_NOTIFICATION
        return await self.world.fresh_notification() if fresh else self.world.notification

    async def delivered_notification(self) -> str:
        """A notification of A's whose answer was delivered: the one a correction needs."""
        if self.missing:
            return MISSING_NOTIFICATION
        if self.world.delivered is None:
            public = await self.world.fresh_notification()
            operator = self.world.headers["operator"]
            answered = await self.world.api.post(
                f"/v1/notifications/{public}/answer",
                json={"answered_by": self.world.a.admin_ids[0], "answer": {"answer": "Yes."}},
                headers=operator,
            )
            assert answered.status_code == 200, answered.text
            deadline = asyncio.get_running_loop().time() + 30
            while (
                await self.world.api.get(f"/v1/notifications/{public}", headers=operator)
            ).json()["status"] != "delivered":
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            self.world.delivered = public
        return self.world.delivered

    async def closed_notification(self) -> str:
        """A notification of A's that has ended: its event stream is finite."""
        if self.missing:
            return MISSING_NOTIFICATION
        public = await self.world.fresh_notification()
        closed = await self.world.api.post(
            f"/v1/notifications/{public}/close", json={}, headers=self.world.headers["operator"]
        )
        assert closed.status_code == 200, closed.text
        return public

    async def webhook_id(self) -> int:
        if self.missing:
            return MISSING_ID
        created = await subscriptions.create(
            self.world.db,
            self.world.a.merchant_id,
            WebhookCreate(url=WEBHOOK_URL, events=[EventType.delivered]),
            allow_private=True,
        )
        self.world.ids.add(created.id)
        self.world.secrets.add(created.secret)
        return created.id

    async def fresh(self, what: str) -> int:
        """A new row of A's for routes that change or delete it (a missing id when missing)."""
        if self.missing:
            return MISSING_ID
        db, a = self.world.db, self.world.a.merchant_id
        if what == "merchant":
            made: Any = await directory.create_merchant(
                db, MerchantCreate(name="To deactivate", whatsapp_sender=unique_phone())
            )
        elif what == "user":
            made = await directory.add_merchant_user(
                db, a, MerchantUserCreate(name="Temp", phone=unique_phone(), user_type="sales")
            )
        elif what == "document":
            made = await directory.add_document(
                db, a, DocumentCreate(category="UserQuestion", title="Temp?", content="Temp.")
            )
        else:
            made = await directory.create_conversation(
                db,
                ConversationCreate(
                    merchant_id=a, channel="whatsapp", customer_phone=unique_phone()
                ),
            )
        self.world.ids.add(made.id)
        return int(made.id)

    async def template(self) -> str:
        """A new answer template's code, of A's (any code when missing: the merchant is)."""
        code = f"t{secrets.token_hex(4)}"
        if not self.missing:
            await answer_templates.create(
                self.world.db,
                self.world.a.merchant_id,
                AnswerTemplateCreate(
                    code=code,
                    type=NotificationType.user_question_request,
                    answer={"answer": f"Secret answer {self.world.token}"},
                ),
            )
        return code

    async def key_id(self) -> int:
        if self.missing:
            return MISSING_ID
        created = await api_keys.create_key(self.world.db, self.world.a.merchant_id)
        self.world.ids.add(created.id)
        return created.id


Build = Callable[[Cell], Awaitable[Req]]


@dataclass(frozen=True)
class Row:
    access: Access
    build: Build
    ok: int  # the status of a caller who may use the route
    other: int = 404  # merchant B's key on A's data
    static: bool = False  # a document about the API, not its data: no id check on the body


def _row(access: Access, ok: int, other: int = 404, static: bool = False) -> Callable[[Build], Row]:
    def wrap(build: Build) -> Row:
        return Row(access, build, ok, other, static)

    return wrap


# ---- the expectation table: one row per route ----------------------------------------------


async def _create_merchant(c: Cell) -> Req:
    body = {"name": f"New shop {secrets.token_hex(3)}", "whatsapp_sender": unique_phone()}
    return Req("POST", "/v1/merchants", body)


async def _add_user(c: Cell) -> Req:
    body = {"name": "New admin", "phone": unique_phone(), "user_type": "sales"}
    return Req("POST", f"/v1/merchants/{c.merchant_id}/users", body)


async def _add_document(c: Cell) -> Req:
    body = {"category": "UserQuestion", "title": "Opening hours?", "content": "Ten to four."}
    return Req("POST", f"/v1/merchants/{c.merchant_id}/documents", body)


async def _list_documents(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/documents")


async def _create_key(c: Cell) -> Req:
    return Req("POST", f"/v1/merchants/{c.merchant_id}/api-keys")


async def _list_keys(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/api-keys")


async def _revoke_key(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{c.merchant_id}/api-keys/{await c.key_id()}")


async def _create_webhook(c: Cell) -> Req:
    body = {"url": WEBHOOK_URL, "events": ["notification.delivered"]}
    return Req("POST", f"/v1/merchants/{c.merchant_id}/webhooks", body)


async def _list_webhooks(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/webhooks")


async def _delete_webhook(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{c.merchant_id}/webhooks/{await c.webhook_id()}")


async def _create_answer_template(c: Cell) -> Req:
    # A new code each time: every caller that may create one does.
    body = {
        "code": f"t{secrets.token_hex(4)}",
        "type": "user_question_request",
        "answer": {"answer": "Ten to four."},
    }
    return Req("POST", f"/v1/merchants/{c.merchant_id}/answer-templates", body)


async def _list_answer_templates(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/answer-templates")


async def _replace_answer_template(c: Cell) -> Req:
    body = {"type": "user_question_request", "answer": {"answer": "Nine to five."}}
    return Req("PUT", f"/v1/merchants/{c.merchant_id}/answer-templates/{await c.template()}", body)


async def _delete_answer_template(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{c.merchant_id}/answer-templates/{await c.template()}")


async def _get_settings(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/settings")


async def _sla(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/sla")


async def _put_settings(c: Cell) -> Req:
    body = {"business_hours": {"monday": ["09:00-17:00"]}, "first_answer_target": 3600}
    return Req("PUT", f"/v1/merchants/{c.merchant_id}/settings", body)


async def _put_template(c: Cell) -> Req:
    # A merchant's own template in a language nobody here uses: the product defaults, which
    # other tests send with, stay as they are.
    body = {
        "content_sid": "HX" + "0f" * 16,
        "body": "A question for you: {{1}}. Please reply.",
        "merchant_id": c.merchant_id,
    }
    return Req("PUT", "/v1/campaigns/merchant_user_question_request/templates/fr", body)


async def _create_conversation(c: Cell) -> Req:
    body = {"merchant_id": c.merchant_id, "channel": "whatsapp", "customer_phone": unique_phone()}
    return Req("POST", "/v1/conversations", body)


async def _add_message(c: Cell) -> Req:
    body = {"role": "assistant", "content": "We will ask the shop."}
    return Req("POST", f"/v1/conversations/{c.conversation_id}/messages", body)


async def _list_messages(c: Cell) -> Req:
    return Req("GET", f"/v1/conversations/{c.conversation_id}/messages")


async def _request(c: Cell) -> Req:
    body = {
        "type": "user_question_request",
        "conversation_id": c.conversation_id,
        "context": {"question": "Do you ship abroad?"},
    }
    return Req("POST", "/v1/notifications", body)


async def _list_notifications(c: Cell) -> Req:
    # Asking for A's notifications by name: a key of B still sees B's only.
    return Req("GET", "/v1/notifications", params={"merchant_id": c.merchant_id, "limit": 500})


async def _get_notification(c: Cell) -> Req:
    return Req("GET", f"/v1/notifications/{await c.notification()}")


async def _events(c: Cell) -> Req:
    return Req("GET", f"/v1/notifications/{await c.closed_notification()}/events")


async def _customer_message(c: Cell) -> Req:
    body = {"text": "Also, can it be gift-wrapped?"}
    return Req(
        "POST", f"/v1/notifications/{await c.notification(fresh=True)}/customer-messages", body
    )


async def _answer(c: Cell) -> Req:
    body = {"answered_by": c.world.a.admin_ids[0], "answer": {"answer": "Yes, worldwide."}}
    return Req("POST", f"/v1/notifications/{await c.notification(fresh=True)}/answer", body)


async def _correct(c: Cell) -> Req:
    # The same correction from each caller that may: the first records v2, the rest repeat it.
    body = {"answered_by": c.world.a.admin_ids[0], "answer": {"answer": "No, Europe only."}}
    return Req("POST", f"/v1/notifications/{await c.delivered_notification()}/correct", body)


async def _close(c: Cell) -> Req:
    return Req(
        "POST",
        f"/v1/notifications/{await c.notification(fresh=True)}/close",
        {"reason": "Handled by phone"},
    )


async def _twilio_message(c: Cell) -> Req:
    return Req("POST", "/v1/webhooks/twilio/messages")


async def _twilio_status(c: Cell) -> Req:
    return Req("POST", "/v1/webhooks/twilio/status")


async def _list_merchants(c: Cell) -> Req:
    return Req("GET", "/v1/merchants", params={"limit": 500})


async def _get_merchant(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}")


async def _patch_merchant(c: Cell) -> Req:
    return Req("PATCH", f"/v1/merchants/{c.merchant_id}", {"instagram_page_id": None})


async def _delete_merchant(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{await c.fresh('merchant')}")


async def _list_users(c: Cell) -> Req:
    return Req("GET", f"/v1/merchants/{c.merchant_id}/users")


async def _get_user(c: Cell) -> Req:
    user = MISSING_ID if c.missing else c.world.a.admin_ids[0]
    return Req("GET", f"/v1/merchants/{c.merchant_id}/users/{user}")


async def _patch_user(c: Cell) -> Req:
    user = await c.fresh("user")
    return Req("PATCH", f"/v1/merchants/{c.merchant_id}/users/{user}", {"on_call": True})


async def _delete_user(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{c.merchant_id}/users/{await c.fresh('user')}")


async def _get_document(c: Cell) -> Req:
    document = MISSING_ID if c.missing else c.world.document_id
    return Req("GET", f"/v1/merchants/{c.merchant_id}/documents/{document}")


async def _patch_document(c: Cell) -> Req:
    document = await c.fresh("document")
    return Req(
        "PATCH", f"/v1/merchants/{c.merchant_id}/documents/{document}", {"content": "Changed."}
    )


async def _delete_document(c: Cell) -> Req:
    return Req("DELETE", f"/v1/merchants/{c.merchant_id}/documents/{await c.fresh('document')}")


async def _list_conversations(c: Cell) -> Req:
    return Req("GET", "/v1/conversations", params={"merchant_id": c.merchant_id})


async def _get_conversation(c: Cell) -> Req:
    return Req("GET", f"/v1/conversations/{c.conversation_id}")


async def _patch_conversation(c: Cell) -> Req:
    return Req("PATCH", f"/v1/conversations/{await c.fresh('conversation')}", {"language": "es"})


async def _delete_conversation(c: Cell) -> Req:
    return Req("DELETE", f"/v1/conversations/{await c.fresh('conversation')}")


def _get(path: str) -> Build:
    async def build(c: Cell) -> Req:
        return Req("GET", path)

    return build


ROUTES: dict[tuple[str, str], Row] = {
    ("POST", "/v1/merchants"): _row("operator", 201)(_create_merchant),
    ("GET", "/v1/merchants"): _row("merchant", 200, other=200)(_list_merchants),
    ("GET", "/v1/merchants/{merchant_id}"): _row("merchant", 200)(_get_merchant),
    ("PATCH", "/v1/merchants/{merchant_id}"): _row("merchant", 200)(_patch_merchant),
    ("DELETE", "/v1/merchants/{merchant_id}"): _row("operator", 204)(_delete_merchant),
    ("POST", "/v1/merchants/{merchant_id}/users"): _row("merchant", 201)(_add_user),
    ("GET", "/v1/merchants/{merchant_id}/users"): _row("merchant", 200)(_list_users),
    ("GET", "/v1/merchants/{merchant_id}/users/{user_id}"): _row("merchant", 200)(_get_user),
    ("PATCH", "/v1/merchants/{merchant_id}/users/{user_id}"): _row("merchant", 200)(_patch_user),
    ("DELETE", "/v1/merchants/{merchant_id}/users/{user_id}"): _row("merchant", 204)(_delete_user),
    ("GET", "/v1/merchants/{merchant_id}/documents/{document_id}"): _row("merchant", 200)(
        _get_document
    ),
    ("PATCH", "/v1/merchants/{merchant_id}/documents/{document_id}"): _row("merchant", 200)(
        _patch_document
    ),
    ("DELETE", "/v1/merchants/{merchant_id}/documents/{document_id}"): _row("merchant", 204)(
        _delete_document
    ),
    ("GET", "/v1/conversations"): _row("merchant", 200, other=200)(_list_conversations),
    ("GET", "/v1/conversations/{conversation_id}"): _row("merchant", 200)(_get_conversation),
    ("PATCH", "/v1/conversations/{conversation_id}"): _row("merchant", 200)(_patch_conversation),
    ("DELETE", "/v1/conversations/{conversation_id}"): _row("merchant", 204)(_delete_conversation),
    ("POST", "/v1/merchants/{merchant_id}/documents"): _row("merchant", 201)(_add_document),
    ("GET", "/v1/merchants/{merchant_id}/documents"): _row("merchant", 200)(_list_documents),
    ("POST", "/v1/merchants/{merchant_id}/api-keys"): _row("operator", 201)(_create_key),
    ("GET", "/v1/merchants/{merchant_id}/api-keys"): _row("operator", 200)(_list_keys),
    ("DELETE", "/v1/merchants/{merchant_id}/api-keys/{key_id}"): _row("operator", 204)(_revoke_key),
    ("PUT", "/v1/campaigns/{campaign}/templates/{language}"): _row("operator", 200)(_put_template),
    ("POST", "/v1/merchants/{merchant_id}/webhooks"): _row("merchant", 201)(_create_webhook),
    ("POST", "/v1/merchants/{merchant_id}/answer-templates"): _row("merchant", 201)(
        _create_answer_template
    ),
    ("GET", "/v1/merchants/{merchant_id}/answer-templates"): _row("merchant", 200)(
        _list_answer_templates
    ),
    ("PUT", "/v1/merchants/{merchant_id}/answer-templates/{code}"): _row("merchant", 200)(
        _replace_answer_template
    ),
    ("DELETE", "/v1/merchants/{merchant_id}/answer-templates/{code}"): _row("merchant", 204)(
        _delete_answer_template
    ),
    ("GET", "/v1/merchants/{merchant_id}/settings"): _row("merchant", 200)(_get_settings),
    ("PUT", "/v1/merchants/{merchant_id}/settings"): _row("merchant", 200)(_put_settings),
    ("GET", "/v1/merchants/{merchant_id}/sla"): _row("merchant", 200)(_sla),
    ("GET", "/v1/merchants/{merchant_id}/webhooks"): _row("merchant", 200)(_list_webhooks),
    ("DELETE", "/v1/merchants/{merchant_id}/webhooks/{webhook_id}"): _row("merchant", 204)(
        _delete_webhook
    ),
    ("POST", "/v1/conversations"): _row("merchant", 201)(_create_conversation),
    ("POST", "/v1/conversations/{conversation_id}/messages"): _row("merchant", 201)(_add_message),
    ("GET", "/v1/conversations/{conversation_id}/messages"): _row("merchant", 200)(_list_messages),
    ("POST", "/v1/notifications"): _row("merchant", 202)(_request),
    ("GET", "/v1/notifications"): _row("merchant", 200, other=200)(_list_notifications),
    ("GET", "/v1/notifications/{notification_id}"): _row("merchant", 200)(_get_notification),
    ("POST", "/v1/notifications/{notification_id}/answer"): _row("merchant", 200)(_answer),
    ("POST", "/v1/notifications/{notification_id}/customer-messages"): _row("merchant", 202)(
        _customer_message
    ),
    ("POST", "/v1/notifications/{notification_id}/correct"): _row("merchant", 202)(_correct),
    ("GET", "/v1/notifications/{notification_id}/events"): _row("merchant", 200)(_events),
    ("POST", "/v1/notifications/{notification_id}/close"): _row("merchant", 200)(_close),
    # Signed by Twilio, not by us: open to every caller, and unsigned requests are 403.
    ("POST", "/v1/webhooks/twilio/messages"): _row("open", 403, other=403)(_twilio_message),
    ("POST", "/v1/webhooks/twilio/status"): _row("open", 403, other=403)(_twilio_status),
    ("GET", "/healthz"): _row("open", 200, other=200)(_get("/healthz")),
    ("GET", "/readyz"): _row("open", 200, other=200)(_get("/readyz")),
    ("GET", "/metrics"): _row("operator", 200)(_get("/metrics")),
    # Outside the OpenAPI document: the document itself and its viewers, for anyone signed in.
    ("GET", "/openapi.json"): _row("any", 200, other=200, static=True)(_get("/openapi.json")),
    ("GET", "/docs"): _row("any", 200, other=200, static=True)(_get("/docs")),
    ("GET", "/docs/oauth2-redirect"): _row("any", 200, other=200, static=True)(
        _get("/docs/oauth2-redirect")
    ),
    ("GET", "/redoc"): _row("any", 200, other=200, static=True)(_get("/redoc")),
}


def expected_status(row: Row, caller: str) -> int:
    if row.access == "open":
        return row.ok
    if caller in ("revoked", "none"):
        return 401
    if caller == "operator":
        return row.ok
    if row.access == "operator":
        return 403
    if row.access == "any":
        return row.ok
    return row.ok if caller == "own" else row.other


# ---- fixtures -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def world(
    dev_env,  # type: ignore[no-untyped-def]
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    make_merchant: MerchantFactory,
) -> AsyncIterator[World]:
    settings = settings_for(task_queue).model_copy(
        update={
            "api_token": SecretStr(TOKEN),
            "twilio_auth_token": None,
            # Webhook receivers on loopback: the subscription routes' cells can succeed.
            "webhook_allow_private": True,
        }
    )
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    token = secrets.token_hex(4)
    a = await make_merchant(name=f"Secret Shop {token}", user_types=["sales"])
    b = await make_merchant(name=f"Other Shop {secrets.token_hex(4)}")
    async with running_worker(dev_env.client, db, task_queue, channel), client_for(app) as api:
        own = await api_keys.create_key(db, a.merchant_id)
        other = await api_keys.create_key(db, b.merchant_id)
        revoked = await api_keys.create_key(db, a.merchant_id)
        await api_keys.revoke_key(db, revoked.id)
        operator = {"Authorization": f"Bearer {TOKEN}"}
        document = await api.post(
            f"/v1/merchants/{a.merchant_id}/documents",
            json={
                "category": "UserQuestion",
                "title": f"Secret document {token}",
                "content": f"Secret content {token}",
            },
            headers=operator,
        )
        assert document.status_code == 201, document.text
        w = World(
            app=app,
            api=api,
            db=db,
            a=a,
            b=b,
            headers={
                "operator": operator,
                "own": {"Authorization": f"Bearer {own.key}"},
                "other": {"Authorization": f"Bearer {other.key}"},
                "revoked": {"Authorization": f"Bearer {revoked.key}"},
                "none": {},
            },
            notification="",
            document_id=document.json()["id"],
            token=token,
        )
        w.notification = await w.fresh_notification()
        w.secrets = {
            token,
            *(phone for phone in a.phones.values()),
            *(phone.lstrip("+") for phone in a.phones.values()),
            *(p.lstrip("+") for p in [a.customer_phone or ""] if p),
        }
        w.ids |= {
            a.merchant_id,
            a.conversation_id,
            a.customer_id,
            w.document_id,
            own.id,
            revoked.id,
            *a.phones,
        }
        yield w


# ---- the matrix -----------------------------------------------------------------------------


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI document's operations, and the routes
    kept out of it (HEAD is implied by GET)."""
    spec = app.openapi()
    found = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def _numbers(value: Any) -> set[int]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, str):
        return {int(n) for n in re.findall(r"\d+", value) if len(n) < 12}
    if isinstance(value, dict):
        return set().union(*(_numbers(k) | _numbers(v) for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(_numbers(v) for v in value))
    return set()


def leaks(world: World, req: Req, response: httpx.Response, row: Row) -> list[str]:
    """What of merchant A's the body names that the request did not itself carry."""
    text = response.text
    found = [s for s in world.secrets if s and s in text]
    if not row.static and response.headers.get("content-type", "").startswith("application/json"):
        asked = _numbers(req.path) | _numbers(req.json) | _numbers(req.params)
        body = response.json()
        listed = isinstance(body, dict) and "items" in body
        if listed and response.request.headers.get("authorization") == world.headers["other"].get(
            "Authorization"
        ):
            # A page B's key may read holds B's own rows, whose numbers (ids, random names)
            # may equal A's ids: the test asserts below that every item is B's instead.
            return found
        found += [f"id {n}" for n in (_numbers(response.json()) & world.ids) - asked]
    return found


async def send(world: World, req: Req, caller: str) -> httpx.Response:
    return await world.api.request(
        req.method, req.path, json=req.json, params=req.params, headers=world.headers[caller]
    )


def _normalize(text: str, ids: set[int]) -> str:
    for n in sorted(ids, key=lambda i: -len(str(i))):
        text = re.sub(rf"(?<!\d){n}(?!\d)", "<ID>", text)
    return text


async def test_every_route_for_every_caller(world: World) -> None:
    app = world.app
    served = app_routes(app)
    missing_rows = sorted(served - set(ROUTES))
    assert not missing_rows, f"routes without a row in the access matrix: {missing_rows}"
    stale_rows = sorted(set(ROUTES) - served)
    assert not stale_rows, f"rows for routes the app does not serve: {stale_rows}"
    openapi = {(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops}

    failures: list[str] = []
    cells = 0
    for (method, path), row in ROUTES.items():
        for caller in CALLERS:
            req = await row.build(Cell(world, missing=False))
            response = await send(world, req, caller)
            cells += 1
            want = expected_status(row, caller)
            where = f"{method} {path} as {caller}"
            if response.status_code != want:
                failures.append(
                    f"{where}: {response.status_code}, expected {want}: {response.text[:300]}"
                )
                continue
            if caller in ("other", "revoked", "none"):
                leaked = leaks(world, req, response, row)
                if leaked:
                    failures.append(f"{where}: the body names {leaked}: {response.text[:300]}")
            if caller == "other" and want == 404:
                twin_req = await row.build(Cell(world, missing=True))
                twin = await send(world, twin_req, caller)
                ids = (_numbers(req.path) | _numbers(req.json)) - {MISSING_ID}
                ours = _normalize(response.text, ids | {MISSING_ID})
                theirs = _normalize(twin.text, {MISSING_ID})
                if twin.status_code != 404 or ours != theirs:
                    failures.append(
                        f"{where}: a foreign id reads differently from a missing one:\n"
                        f"  foreign: {response.text}\n  missing: {twin.text}"
                    )
            if caller == "other" and (method, path) in (
                ("GET", "/v1/merchants"),
                ("GET", "/v1/conversations"),
            ):
                items = response.json()["items"]
                assert all(
                    item.get("merchant_id", item["id"]) == world.b.merchant_id for item in items
                ), items
            if caller == "other" and (method, path) == ("GET", "/v1/notifications"):
                assert all(
                    n["merchant_id"] == world.b.merchant_id for n in response.json()["items"]
                )
    assert not failures, "\n".join(failures)
    assert cells == len(ROUTES) * len(CALLERS)
    assert {r for r in ROUTES if r in openapi} == openapi
    figure(f"access matrix: {len(ROUTES)} routes x {len(CALLERS)} callers", cells, "cells")


async def test_an_idempotency_key_of_another_merchant_reveals_nothing(world: World) -> None:
    """Idempotency keys are global: B's key reusing A's gets 409, never A's notification."""
    key = f"idem-{secrets.token_hex(6)}"
    first = await world.api.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": world.a.conversation_id,
            "context": {"question": f"Secret question {world.token}?"},
            "idempotency_key": key,
        },
        headers=world.headers["own"],
    )
    assert first.status_code == 202, first.text
    theirs = await world.api.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": world.b.conversation_id,
            "context": {"question": "Anything?"},
            "idempotency_key": key,
        },
        headers=world.headers["other"],
    )
    assert theirs.status_code == 409, theirs.text
    assert first.json()["notification_id"] not in theirs.text
    assert json.loads(theirs.text)["error"]["code"] == "conflict"


async def test_key_authentication_latency(world: World) -> None:
    """p50 of one GET with the operator token and with a merchant key, interleaved in one run:
    the difference is the key's database look-up. Reported, never asserted."""
    url = f"/v1/notifications/{world.notification}"
    timings: dict[str, list[float]] = {"operator": [], "own": []}
    for _ in range(10):  # warm both paths (connections, caches)
        for caller in timings:
            await world.api.get(url, headers=world.headers[caller])
    for _ in range(300):
        for caller, samples in timings.items():
            started = time.perf_counter()
            response = await world.api.get(url, headers=world.headers[caller])
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200
    p50 = {caller: statistics.median(samples) * 1000 for caller, samples in timings.items()}
    figure("GET /v1/notifications/{id} p50, operator token (300 requests)", p50["operator"], "ms")
    figure("GET /v1/notifications/{id} p50, merchant key (300 requests)", p50["own"], "ms")
    figure("added by key authentication, p50", p50["own"] - p50["operator"], "ms")
