"""Customer satisfaction (DESIGN §10) through the real API, dev server, worker, database and the
strict fake Twilio: the customer is asked once after delivery (the quick-reply content inside
the 24 h window, the approved template outside it); a button tap or a bare digit within a day
is the rating, anything else a normal customer message; the body, the SLA report and the
timeline show it; with CSAT off nothing is asked and no CSAT statement runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import ActivityEnvironment

from notifyflow import metrics
from notifyflow.ai.offline import OfflineProvider
from notifyflow.cli import _print_notification
from notifyflow.db.seed import DEFAULT_TEMPLATES
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Conversation, CsatResponse
from notifyflow.db.types import utcnow
from notifyflow.history_costs import history_cost
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.notification import Campaign
from notifyflow.models.workflow_io import AskSatisfactionInput, NotificationOutcome
from notifyflow.read_model import get_notification, notification_timeline
from notifyflow.worker import build_activities
from tests.figures import figure
from tests.fixtures.histories import activities_run
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop
from tests.inbound.conftest import MESSAGES, SENDER, Inbound, new_sid, stored
from tests.workflows.helpers import wait_status

QUICK_REPLY = Campaign.customer_satisfaction_quick_reply
REQUEST = Campaign.customer_satisfaction_request


async def _csat_shop(inbound: Inbound, shop_factory: Any, **kwargs: Any) -> Shop:
    shop: Shop = await shop_factory(**kwargs)
    response = await inbound.http.put(
        f"/v1/merchants/{shop.merchant_id}/settings", json={"csat_enabled": True}
    )
    assert response.status_code == 200, response.text
    assert response.json()["csat_enabled"] is True
    return shop


async def _answered(inbound: Inbound, shop: Shop, question: str) -> tuple[str, WorkflowHistory]:
    """A question asked, answered by an admin and delivered; the finished workflow's history."""
    public = await inbound.ask(shop, question)
    response = await inbound.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": "Sí, de 10 a 14."}},
    )
    assert response.status_code == 200, response.text
    handle = inbound.client.get_workflow_handle(public, result_type=NotificationOutcome)
    outcome = await handle.result()
    assert outcome.status == "delivered"
    return public, await handle.fetch_history()


def _asks(channel: FakeTwilioChannel, shop: Shop) -> list[Any]:
    sids = {t.content_sid for (c, _), t in DEFAULT_TEMPLATES.items() if c in (QUICK_REPLY, REQUEST)}
    return [s for s in channel.to(shop.customer_phone) if s.content_sid in sids]


async def _reply(
    inbound: Inbound, shop: Shop, body: str, payload: str | None = None
) -> tuple[int, str]:
    """The customer writes (or taps a quick-reply button: ButtonPayload + ButtonText)."""
    sid = new_sid()
    params = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "0f" * 16,
        "From": f"whatsapp:{shop.customer_phone}",
        "To": SENDER,
        "Body": body,
        "NumMedia": "0",
        "ProfileName": "Lucía",
        "WaId": shop.customer_phone.lstrip("+"),
    }
    if payload is not None:
        params |= {"ButtonPayload": payload, "ButtonText": body, "MessageType": "button"}
    response = await inbound.twilio.post(MESSAGES, params)
    return response.status_code, sid


async def _csat(inbound: Inbound, public: str) -> dict[str, Any] | None:
    response = await inbound.http.get(f"/v1/notifications/{public}")
    assert response.status_code == 200, response.text
    value: dict[str, Any] | None = response.json()["csat"]
    return value


def _scheduled(history: WorkflowHistory) -> list[str]:
    """The activities the workflow ran, in order, local ones (the open) included."""
    return [name for name, _, _ in activities_run(history)]


def _rated(score: int) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "notifyflow_csat_ratings_total", {"score": str(score)}
    )
    return value or 0.0


async def test_asked_once_by_quick_reply_and_a_button_tap_is_the_rating(
    inbound: Inbound,
    db: SessionFactory,
    channel: FakeTwilioChannel,
    shop_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shop = await _csat_shop(inbound, shop_factory)
    public, history = await _answered(inbound, shop, "¿Abren el domingo?")
    assert _scheduled(history) == ["open_notification", "deliver_answer", "ask_satisfaction"]
    cost = history_cost(history)
    figure("answered notification with CSAT: billable actions", cost.actions)
    figure("answered notification with CSAT: history events", cost.events)

    (ask,) = _asks(channel, shop)
    # Inside the window: the in-session quick-reply content, in the customer's language.
    assert ask.content_sid == DEFAULT_TEMPLATES[(QUICK_REPLY, "es")].content_sid
    assert ask.variables == {"1": public}
    body = await _csat(inbound, public)
    assert body is not None and body["method"] == "quick_reply"
    assert (body["score"], body["answered_at"]) == (None, None)

    # A retried activity (or one whose worker died after Twilio took the ask, before the row
    # was written): the ledger has the send, nothing goes out again.
    activities = build_activities(db, OfflineProvider(), channel)
    again = ActivityEnvironment()
    n = parse_notification_id(public)
    assert (
        await again.run(
            activities.satisfaction.ask_satisfaction, AskSatisfactionInput(notification_id=n)
        )
    ).asked
    async with db() as session:
        row = await session.get(CsatResponse, n)
        assert row is not None
        await session.delete(row)
        await session.commit()
    result = await again.run(
        activities.satisfaction.ask_satisfaction, AskSatisfactionInput(notification_id=n)
    )
    assert (result.asked, result.method) == (True, "quick_reply")
    assert len(_asks(channel, shop)) == 1

    before = _rated(4)
    status, sid = await _reply(inbound, shop, "4", payload=f"csat:{public}:4")
    assert status == 200
    (message,) = await stored(db, sid)
    assert message.other_data["button_payload"] == f"csat:{public}:4"
    body = await _csat(inbound, public)
    assert body is not None and body["score"] == 4 and body["answered_at"] is not None
    assert _rated(4) == before + 1

    # A second rating does not overwrite the first: it stays an ordinary message.
    status, sid = await _reply(inbound, shop, "1")
    assert status == 200 and await stored(db, sid)
    status, _ = await _reply(inbound, shop, "1 - Mala", payload=f"csat:{public}:1")
    body = await _csat(inbound, public)
    assert body is not None and body["score"] == 4

    sla = await inbound.http.get(f"/v1/merchants/{shop.merchant_id}/sla")
    assert sla.status_code == 200, sla.text
    assert (sla.json()["csat_average"], sla.json()["csat_response_rate"]) == (4.0, 1.0)
    # What `notifyflow show` prints as the timeline.
    timeline = await notification_timeline(db, public)
    rated = [e for e in timeline if e.event == "customer rated the answer"]
    assert "sent csat" in [e.event for e in timeline] and [e.detail for e in rated] == ["4/5"]
    view = await get_notification(db, public)
    _print_notification(view, timeline)
    shown = capsys.readouterr().out
    assert "csat" in shown and "rated 4/5" in shown


async def test_free_text_is_a_customer_message_and_a_digit_counts_within_a_day_only(
    inbound: Inbound,
    db: SessionFactory,
    channel: FakeTwilioChannel,
    shop_factory: Any,
) -> None:
    shop = await _csat_shop(inbound, shop_factory)
    first, _ = await _answered(inbound, shop, "¿Tienen aparcamiento?")

    start = utcnow()
    status, sid = await _reply(inbound, shop, "Gracias, 5 estrellas!")
    assert status == 200
    (message,) = await stored(db, sid)
    assert (message.role, message.content) == ("user", "Gracias, 5 estrellas!")
    async with db() as session:
        conversation = await session.get(Conversation, shop.conversation_id)
        assert conversation is not None and conversation.last_inbound_at is not None
        assert conversation.last_inbound_at >= start
    assert (await _csat(inbound, first) or {})["score"] is None

    status, sid = await _reply(inbound, shop, " 5 ")
    assert status == 200 and await stored(db, sid)
    assert (await _csat(inbound, first) or {})["score"] == 5

    # A second notification asked, then the ask is more than a day old: a digit is a message.
    second, _ = await _answered(inbound, shop, "¿Envían a Canarias?")
    async with db() as session:
        await session.execute(
            update(CsatResponse)
            .where(CsatResponse.notification_id == parse_notification_id(second))
            .values(asked_at=utcnow() - timedelta(hours=25))
        )
        await session.commit()
    status, sid = await _reply(inbound, shop, "3")
    assert status == 200 and await stored(db, sid)
    assert (await _csat(inbound, second) or {})["score"] is None
    sla = (await inbound.http.get(f"/v1/merchants/{shop.merchant_id}/sla")).json()
    assert (sla["csat_average"], sla["csat_response_rate"]) == (5.0, 0.5)
    listed = (await inbound.http.get(f"/v1/notifications?merchant_id={shop.merchant_id}")).json()
    assert [(i["notification_id"], (i["csat"] or {}).get("score")) for i in listed["items"]] == [
        (second, None),
        (first, 5),
    ]
    assert len(_asks(channel, shop)) == 2


async def test_outside_the_window_the_approved_template_asks(
    inbound: Inbound,
    db: SessionFactory,
    channel: FakeTwilioChannel,
    shop_factory: Any,
) -> None:
    shop = await _csat_shop(inbound, shop_factory, last_inbound=None)
    public, _ = await _answered(inbound, shop, "¿Hacen envíos?")
    row = await wait_status(db, public, {"delivered"})
    assert row.delivery_method == "campaign"
    (ask,) = _asks(channel, shop)
    assert ask.content_sid == DEFAULT_TEMPLATES[(REQUEST, "es")].content_sid
    assert ask.variables == {"1": public}
    body = await _csat(inbound, public)
    assert body is not None and body["method"] == "template"
    # The template's five buttons: a tap of the fourth.
    status, _ = await _reply(inbound, shop, "4", payload=f"csat:{public}:4")
    assert status == 200
    assert (await _csat(inbound, public) or {})["score"] == 4


@contextmanager
def _csat_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "csat_response" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_csat_off_asks_nothing_and_runs_no_csat_statement(
    inbound: Inbound,
    db: SessionFactory,
    db_engine: AsyncEngine,
    channel: FakeTwilioChannel,
    shop_factory: Any,
) -> None:
    shop: Shop = await shop_factory()
    with _csat_statements(db_engine) as statements:
        public, history = await _answered(inbound, shop, "¿Abren en festivos?")
        status, _ = await _reply(inbound, shop, "Vale, gracias")
        assert status == 200
    assert statements == []
    assert _scheduled(history) == ["open_notification", "deliver_answer"]
    # No csat-ask patch marker (the open's own patch and local-activity markers are there).
    assert not [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and b"csat-ask" in e.marker_recorded_event_attributes.SerializeToString()
    ]
    assert _asks(channel, shop) == []
    cost = history_cost(history)
    figure("answered notification without CSAT: billable actions", cost.actions)
    figure("answered notification without CSAT: history events", cost.events)
    assert await _csat(inbound, public) is None
