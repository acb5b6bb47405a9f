"""Signed outbound webhooks (DESIGN §8) on a real dev server: a receiver on 127.0.0.1 that
fails the first attempts gets each event exactly once accepted, with the same webhook-id on
every try and signatures the `standardwebhooks` reference verifier accepts; receiver addresses
are checked; resolution notes never leave."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from notifyflow import starter
from notifyflow.activities.webhooks import WebhookActivities
from notifyflow.ai.offline import OfflineProvider
from notifyflow.api.app import create_app
from notifyflow.db.tables import WebhookEvent
from notifyflow.history_costs import history_cost
from notifyflow.webhooks.dispatch import run_dispatcher, workflow_id
from notifyflow.worker import build_activities, build_worker
from tests.api.conftest import assert_envelope, client_for, make_settings
from tests.fakes._threaded import ThreadedServer
from tests.figures import figure
from tests.fixtures.lifecycle import settings_for
from tests.workflows.helpers import until

ALL_EVENTS = [
    "notification.requested",
    "notification.answered",
    "notification.delivered",
    "notification.delivery_failed",
    "notification.expired",
    "notification.closed",
]


@dataclass
class Receiver:
    """Answers 500 to the first ``fail_first`` attempts of every webhook-id, then 200."""

    fail_first: int = 2
    attempts: list[tuple[dict[str, str], str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadedServer | None = None

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            tried = sum(1 for h, _, _ in self.attempts if h["webhook-id"] == headers["webhook-id"])
            status = 500 if tried < self.fail_first else 200
            self.attempts.append((headers, body, status))
        return PlainTextResponse("ok" if status == 200 else "try again", status_code=status)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.base_url}/hooks"

    def accepted(self) -> list[tuple[dict[str, str], str]]:
        with self.lock:
            return [(h, b) for h, b, s in self.attempts if s == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.server = ThreadedServer(
        Starlette(routes=[Route("/hooks", r.handle, methods=["POST"])]), "hooks"
    )
    r.server.start()
    try:
        yield r
    finally:
        r.server.stop()


@pytest_asyncio.fixture
async def stack(dev_env, db, task_queue, channel) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A worker with the webhook activities and the outbox dispatcher, and the API."""
    webhooks = WebhookActivities(db, allow_private=True)
    worker = build_worker(
        dev_env.client,
        task_queue,
        build_activities(db, OfflineProvider(), channel),
        webhooks=webhooks,
    )
    stop = asyncio.Event()
    app = create_app(
        make_settings(TEMPORAL_TASK_QUEUE=task_queue, NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE="true"),
        session_factory=db,
        temporal_client=dev_env.client,
    )
    async with worker, client_for(app) as http:
        dispatcher = asyncio.create_task(run_dispatcher(dev_env.client, db, task_queue, stop))
        try:
            yield http
        finally:
            stop.set()
            await dispatcher
            await webhooks.aclose()


async def _events(db, notification_id: int) -> list[WebhookEvent]:  # type: ignore[no-untyped-def]
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.notification_id == notification_id)
                    .order_by(WebhookEvent.id)
                )
            ).all()
        )


async def test_each_event_is_accepted_once_with_one_webhook_id_and_a_valid_signature(
    dev_env, db, task_queue, shop_factory, receiver: Receiver, stack: httpx.AsyncClient
) -> None:
    shop = await shop_factory()
    created = await stack.post(
        f"/v1/merchants/{shop.merchant_id}/webhooks",
        json={"url": receiver.url, "events": ALL_EVENTS},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    listed = (await stack.get(f"/v1/merchants/{shop.merchant_id}/webhooks")).json()
    assert [w["id"] for w in listed] == [created.json()["id"]] and "secret" not in listed[0]

    view = await starter.request_notification(
        dev_env.client,
        db,
        type="user_support_request",
        conversation_id=shop.conversation_id,
        context={"support_request_reason": "My order arrived damaged"},
        settings=settings_for(task_queue),
    )
    public = view.notification_id
    n = int(public.removeprefix("NOTIF_"))
    # Answered once the first event's first attempt arrives, so the three events' retries
    # (5 s, then 10 s apart) overlap instead of following one another.
    await until(lambda: bool(receiver.attempts), timeout=60)
    answered = await stack.post(
        f"/v1/notifications/{public}/answer",
        json={
            "answered_by": shop.admins[0].id,
            "answer": {
                "agent_response_to_customer": "We will send a new one today.",
                "resolution_notes": "internal-note-7f3a: refund code 991",
            },
        },
    )
    assert answered.status_code == 200, answered.text

    # Settled: every event's delivery workflow has ended.
    async def all_settled() -> bool:
        events = await _events(db, n)
        if [e.type for e in events] != ALL_EVENTS[:3]:
            return False
        for event in events:
            handle = dev_env.client.get_workflow_handle(workflow_id(event.id))
            try:
                await asyncio.wait_for(handle.result(), 60)
            except Exception:
                return False
        return True

    assert await asyncio.wait_for(_poll(all_settled), 120)

    accepted = receiver.accepted()
    # Each event has a workflow of its own, so they arrive in any order (the body's
    # timestamp orders them): each exactly once.
    types = [json.loads(b)["type"] for _, b in accepted]
    assert sorted(types) == sorted(ALL_EVENTS[:3])
    ids = [h["webhook-id"] for h, _ in accepted]
    assert len(set(ids)) == 3
    # Every attempt of an event carried its one webhook-id; each was tried 3 times.
    with receiver.lock:
        per_id = {i: [s for h, _, s in receiver.attempts if h["webhook-id"] == i] for i in ids}
    assert all(statuses == [500, 500, 200] for statuses in per_id.values()), per_id
    verifier = Webhook(secret)
    for headers, body in accepted:
        verified = verifier.verify(body, headers)
        assert verified["data"]["notification_id"] == public
    assert "internal-note-7f3a" not in "".join(b for _, b, _ in receiver.attempts)
    # A delivered event's workflow: its start and three attempts.
    cost = history_cost(
        await dev_env.client.get_workflow_handle(
            workflow_id((await _events(db, n))[0].id)
        ).fetch_history()
    )
    figure("webhook event after 2 refusals: billable actions", cost.actions)
    figure("webhook event after 2 refusals: history events", cost.events)
    assert cost.actions == 4
    subscription = (await stack.get(f"/v1/merchants/{shop.merchant_id}/webhooks")).json()[0]
    assert subscription["last_success_at"] is not None
    assert "HTTP 500" in subscription["last_error"]


async def _poll(check) -> bool:  # type: ignore[no-untyped-def]
    while not await check():
        await asyncio.sleep(0.2)
    return True


@pytest.mark.parametrize(
    ("url", "allow_private", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", True, "link-local"),
        ("http://[fe80::1]/hooks", True, "link-local"),
        ("http://127.0.0.1:8080/hooks", False, "private, loopback"),
        ("http://10.1.2.3/hooks", False, "private, loopback"),
        ("http://localhost/hooks", False, "private, loopback"),
        ("http://100.64.1.1/hooks", False, "private, loopback or reserved"),
        ("http://100.100.100.200/latest", True, "metadata"),
        ("http://[fd00:ec2::254]/latest", True, "metadata"),
        ("http://[2002:a9fe:a9fe::]/hooks", True, "link-local"),
        ("http://[::ffff:169.254.169.254]/hooks", True, "link-local"),
        ("http://a..b/hooks", True, "not a valid host name"),
        ("ftp://example.com/hooks", True, "http or https"),
        ("https://user:pw@example.com/hooks", True, "credentials"),
        ("http:///nohost", True, "no host"),
    ],
)
async def test_receiver_addresses_are_checked(
    db, make_merchant, url: str, allow_private: bool, reason: str
) -> None:
    shop = await make_merchant()
    env = {"NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE": "true"} if allow_private else {}
    async with client_for(create_app(make_settings(**env), session_factory=db)) as api:
        refused = await api.post(
            f"/v1/merchants/{shop.merchant_id}/webhooks",
            json={"url": url, "events": ["notification.delivered"]},
        )
        details = assert_envelope(refused, 422, "invalid_input")
        assert reason in refused.json()["error"]["message"], refused.text
        assert details[0]["path"] == "/url"
        assert (await api.get(f"/v1/merchants/{shop.merchant_id}/webhooks")).json() == []


async def test_unknown_events_and_deleted_subscriptions(db, make_merchant) -> None:
    shop = await make_merchant()
    app = create_app(make_settings(NOTIFYFLOW_WEBHOOK_ALLOW_PRIVATE="true"), session_factory=db)
    async with client_for(app) as api:
        bad = await api.post(
            f"/v1/merchants/{shop.merchant_id}/webhooks",
            json={"url": "http://127.0.0.1:9/h", "events": ["notification.exploded"]},
        )
        assert_envelope(bad, 422)
        made = await api.post(
            f"/v1/merchants/{shop.merchant_id}/webhooks",
            json={"url": "http://127.0.0.1:9/h", "events": ["notification.closed"]},
        )
        assert made.status_code == 201
        hook = made.json()["id"]
        assert (
            await api.delete(f"/v1/merchants/{shop.merchant_id}/webhooks/{hook}")
        ).status_code == 204
        gone = await api.delete(f"/v1/merchants/{shop.merchant_id}/webhooks/{hook}")
        assert_envelope(gone, 404, "not_found")
        assert (await api.get(f"/v1/merchants/{shop.merchant_id}/webhooks")).json() == []
        missing = await api.get("/v1/merchants/2147483000/webhooks")
        assert_envelope(missing, 404, "not_found")
