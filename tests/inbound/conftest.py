"""The real API (signed Twilio webhooks) over the real database, the dev server and a real worker
on this test's task queue, its WhatsApp channel the real Twilio SDK against the strict fake Twilio
(``inbound``: read back through ``channel.to(phone)``; ``twilio_inbound``: status callbacks aimed
at the app), and the offline AI."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import select
from temporalio.client import Client
from twilio.request_validator import RequestValidator

from notifyflow import starter
from notifyflow.api.app import create_app
from notifyflow.channels.base import Channel
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Delivery, InboundEvent, Message
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.inbound import AdminReplyDecision, FallbackResult
from tests.api.conftest import client_for
from tests.fakes.twilio_server import FAKE_AUTH_TOKEN, FakeTwilio
from tests.fixtures.fakes import fake_settings
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker

HISTORIES = Path(__file__).parent / "histories"
PUBLIC_URL = "https://notifyflow.example.com"
MESSAGES = "/v1/webhooks/twilio/messages"
STATUS = "/v1/webhooks/twilio/status"
# make_shop gives every shop this sender; phones are unique, so senders never collide.
SENDER = "whatsapp:+14155550100"


def new_sid(prefix: str = "SM") -> str:
    """A Twilio-shaped message SID (34 characters), unique in the run."""
    return prefix + uuid.uuid4().hex


def inbound_settings(task_queue: str, **env: Any) -> Settings:
    values: dict[str, Any] = {
        "TEMPORAL_TASK_QUEUE": task_queue,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "NOTIFYFLOW_PUBLIC_URL": PUBLIC_URL,
        "NOTIFYFLOW_CHANNEL": "console",
        "NOTIFYFLOW_AI": "offline",
    }
    values.update(env)
    return Settings(**values)


@dataclass
class Webhooks:
    """Posts webhooks as Twilio does: form-encoded and signed over the public URL."""

    http: httpx.AsyncClient
    token: str = FAKE_AUTH_TOKEN

    def sign(self, path: str, params: dict[str, str]) -> str:
        return RequestValidator(self.token).compute_signature(PUBLIC_URL + path, params)

    async def post(
        self, path: str, params: dict[str, str], *, signature: str | None = None
    ) -> httpx.Response:
        headers = {
            "X-Twilio-Signature": self.sign(path, params) if signature is None else signature
        }
        return await self.http.post(path, data=params, headers=headers)

    async def message(
        self,
        *,
        sender: str,
        body: str,
        to: str = SENDER,
        sid: str | None = None,
        quoted: str | None = None,
        profile: str = "Ana",
    ) -> tuple[httpx.Response, str]:
        sid = sid or new_sid()
        params = {
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": "AC" + "0f" * 16,
            "From": f"whatsapp:{sender}",
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "ProfileName": profile,
            "WaId": sender.lstrip("+"),
        }
        if quoted:
            params["OriginalRepliedMessageSid"] = quoted
        return await self.post(MESSAGES, params), sid

    async def status(self, sid: str, status: str, error_code: str | None = None) -> httpx.Response:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0f" * 16}
        if error_code:
            params["ErrorCode"] = error_code
        return await self.post(STATUS, params)


@dataclass
class Inbound:
    http: httpx.AsyncClient
    twilio: Webhooks
    client: Client
    db: SessionFactory
    settings: Settings

    async def ask(self, shop: Shop, question: str = "Do you open on Sundays?") -> str:
        view = await starter.request_notification(
            self.client,
            self.db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": question},
            settings=self.settings,
        )
        return view.notification_id

    async def ask_support(self, shop: Shop, reason: str) -> str:
        view = await starter.request_notification(
            self.client,
            self.db,
            type="user_support_request",
            conversation_id=shop.conversation_id,
            context={"support_request_reason": reason},
            settings=self.settings,
        )
        return view.notification_id

    async def reply_decision(
        self, sid: str, timeout: float = 30.0, *, record_as: str | None = None
    ) -> AdminReplyDecision:
        handle = self.client.get_workflow_handle(f"whatsapp:{sid}", result_type=AdminReplyDecision)
        decision = await asyncio.wait_for(handle.result(), timeout)
        await self._record(handle.id, record_as)
        return decision

    async def fallback_result(
        self, workflow_id: str, timeout: float = 30.0, *, record_as: str | None = None
    ) -> FallbackResult:
        await until(lambda: self._exists(workflow_id), timeout)
        handle = self.client.get_workflow_handle(workflow_id, result_type=FallbackResult)
        result = await asyncio.wait_for(handle.result(), timeout)
        await self._record(workflow_id, record_as)
        return result

    async def _record(self, workflow_id: str, name: str | None) -> None:
        """With ``NOTIFYFLOW_RECORD_INBOUND_HISTORIES=1``, keep the finished workflow's history
        as ``histories/<name>.json`` for the replay test (re-record only on purpose)."""
        if name and os.environ.get("NOTIFYFLOW_RECORD_INBOUND_HISTORIES") == "1":
            history = await self.client.get_workflow_handle(workflow_id).fetch_history()
            (HISTORIES / f"{name}.json").write_text(history.to_json())
            from tests.replay.stamp import write_stamp

            write_stamp(HISTORIES, "NOTIFYFLOW_RECORD_INBOUND_HISTORIES=1 pytest tests/inbound")

    async def _exists(self, workflow_id: str) -> bool:
        try:
            await self.client.get_workflow_handle(workflow_id).describe()
            return True
        except Exception:  # noqa: BLE001 - not started yet
            return False


async def until(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


async def deliveries(db: SessionFactory, public: str, kind: str | None = None) -> list[Delivery]:
    n = parse_notification_id(public)
    query = select(Delivery).where(Delivery.notification_id == n).order_by(Delivery.id)
    if kind:
        query = query.where(Delivery.kind == kind)
    async with db() as session:
        return list((await session.scalars(query)).all())


async def sent_requests(db: SessionFactory, public: str, count: int) -> dict[int, Delivery]:
    """The request campaign's ledger rows once ``count`` were accepted, by merchant user."""

    async def ready() -> dict[int, Delivery] | None:
        rows = [
            d
            for d in await deliveries(db, public, "request")
            if d.provider_message_id and d.merchant_user_id is not None
        ]
        if len(rows) < count:
            return None
        return {d.merchant_user_id: d for d in rows if d.merchant_user_id is not None}

    found: dict[int, Delivery] = await until(ready, what=f"{count} request sends of {public}")
    return found


async def stored(db: SessionFactory, sid: str) -> list[Message]:
    async with db() as session:
        return list(
            (await session.scalars(select(Message).where(Message.provider_message_id == sid))).all()
        )


async def events(db: SessionFactory, fragment: str) -> list[str]:
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(InboundEvent.event_key).where(InboundEvent.event_key.contains(fragment))
                )
            ).all()
        )


async def _serve(
    dev_env: Any, db: SessionFactory, task_queue: str, channel: Channel, **env: Any
) -> AsyncIterator[Inbound]:
    settings = inbound_settings(task_queue, **env)
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel):
        async with client_for(app) as http:
            yield Inbound(http, Webhooks(http), dev_env.client, db, settings)


@pytest_asyncio.fixture
async def inbound(
    dev_env: Any, db: SessionFactory, task_queue: str, channel: FakeTwilioChannel
) -> AsyncIterator[Inbound]:
    """The app and a worker whose WhatsApp channel is the real SDK on the strict fake Twilio
    (``channel.to(phone)``: what the fake accepted)."""
    async for env in _serve(dev_env, db, task_queue, channel):
        yield env


@pytest_asyncio.fixture
async def twilio_inbound(
    dev_env: Any, db: SessionFactory, task_queue: str, twilio: FakeTwilio
) -> AsyncIterator[Inbound]:
    """The app and a worker whose WhatsApp channel is the real Twilio SDK on the fake Twilio
    (status callbacks aimed at the app's public URL)."""
    from notifyflow.channels.twilio_channel import TwilioChannel

    whatsapp = TwilioChannel(fake_settings(twilio, NOTIFYFLOW_PUBLIC_URL=PUBLIC_URL))
    try:
        async for env in _serve(dev_env, db, task_queue, whatsapp):
            yield env
    finally:
        await whatsapp.close()
