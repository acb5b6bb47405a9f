"""Record the histories that CI replays: ``python -m tests.replay.record_histories``.

Runs each scenario on the time-skipping server with a throwaway SQLite database (migrated, so
the default templates are there), the offline AI and a recording channel (a history does not
depend on the provider; the channel only decides which sends fail), and writes
``tests/replay/histories/<scenario>.json`` plus ``recorded.json`` (tests/replay/stamp.py: the
sha256 of the workflow code and the commit of main they were recorded on; test_replay.py fails
when the workflow code has changed since).

Besides the happy and timer paths, three histories hold failed activities: a fan-out that gives
up (the channel refuses every request as a configuration error: the local ``open_notification``
fails non-retryably and the notification is closed), a delivery that gives up (``deliver_answer``
fails non-retryably: delivery_failed), and a best-effort reminder that fails (``follow_up``
fails; the notification waits on and is answered). One more holds the open's handover: its
local attempt fails retryably and the ``open_notification`` activity takes over.

Re-record on purpose only: a workflow change that running workflows must survive needs
``workflow.patched``, and the histories recorded before it are what proves it replays.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from notifyflow import corrections, service_levels, starter
from notifyflow.channels.base import OutboundTemplate, OutboundText, SendError, SendResult
from notifyflow.db.migrate import upgrade
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.models.corrections import correction_workflow_id
from notifyflow.models.ids import parse_notification_id
from notifyflow.models.views import NotificationView
from notifyflow.models.workflow_io import (
    AnswerSource,
    AnswerSubmission,
    CloseRequest,
)
from notifyflow.service_levels import MerchantSettingsBody
from tests.fixtures.lifecycle import (
    RecordingChannel,
    Shop,
    make_shop,
    running_worker,
    settings_for,
)
from tests.fixtures.temporal import register_search_attributes
from tests.replay.stamp import write_stamp

HERE = Path(__file__).parent / "histories"
log = logging.getLogger("record_histories")
TQ = "replay-recording"

Scenario = Callable[[WorkflowEnvironment, SessionFactory], Awaitable[str]]


class ScriptedChannel(RecordingChannel):
    """RecordingChannel that fails every send whose idempotency key contains a step of
    ``failing`` (``":request:"``, ``":reminder:"``, ``":answer:customer"``) with its error."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, BaseException] = {}
        # Failed once each, then sent.
        self.failing_once: dict[str, BaseException] = {}

    def _scripted(self, key: str) -> None:
        for step, error in self.failing.items():
            if step in key:
                raise error
        for step in list(self.failing_once):
            if step in key:
                raise self.failing_once.pop(step)

    async def send_text(self, message: OutboundText) -> SendResult:
        self._scripted(message.idempotency_key)
        return await super().send_text(message)

    async def send_template(self, message: OutboundTemplate) -> SendResult:
        self._scripted(message.idempotency_key)
        return await super().send_template(message)


CHANNEL = ScriptedChannel()


async def ask(
    env: WorkflowEnvironment, db: SessionFactory, shop: Shop, question: str
) -> NotificationView:
    """A customer's question to ``shop``, through the starter as the API sends it."""
    return await starter.request_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": question},
        settings=settings_for(TQ),
    )


async def waiting(env: WorkflowEnvironment, public: str) -> None:
    """Until the workflow has asked its recipients and waits for an answer (its wait timer is in
    the history). Read from the history, not by query: the time-skipping server answers a
    query with a workflow task of its own, which would end up in the recorded history."""
    handle = env.client.get_workflow_handle(public)
    for _ in range(600):
        history = await handle.fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{public} never waited for an answer")


async def question_answered_free_form(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db)
    view = await ask(env, db, shop, "What are your business hours?")
    await waiting(env, view.notification_id)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Mon-Fri 9am-5pm"},
    )
    return view.notification_id


async def question_answered_with_csat(env: WorkflowEnvironment, db: SessionFactory) -> str:
    """The merchant has CSAT on: after delivery, the ``csat-ask`` patch and ask_satisfaction."""
    shop = await make_shop(db)
    await service_levels.write(
        db, shop.merchant_id, MerchantSettingsBody(csat_enabled=True), settings_for(TQ)
    )
    view = await ask(env, db, shop, "Do you sell gift cards?")
    await waiting(env, view.notification_id)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Yes, from 10 to 200 euros"},
    )
    return view.notification_id


async def support_answered_by_template(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db, last_inbound=None)
    view = await starter.request_notification(
        env.client,
        db,
        type="user_support_request",
        conversation_id=shop.conversation_id,
        context={"support_request_reason": "Arrived damaged, I want a refund"},
        settings=settings_for(TQ),
    )
    await waiting(env, view.notification_id)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.user("returns").id,
        answer={
            "agent_response_to_customer": "A refund is on its way.",
            "resolution_notes": "refund #42",
        },
    )
    return view.notification_id


async def support_reminded_escalated_expired(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db, admins=1, others=("returns",), on_call=("oncall",))
    view = await starter.request_notification(
        env.client,
        db,
        type="user_support_request",
        conversation_id=shop.conversation_id,
        context={"support_request_reason": "I want to return a wrong item"},
        settings=settings_for(TQ),
    )
    await env.sleep(timedelta(hours=25))
    return view.notification_id


async def question_refused_then_answered_by_signal(
    env: WorkflowEnvironment, db: SessionFactory
) -> str:
    shop = await make_shop(db)
    view = await ask(env, db, shop, "Pets allowed?")
    handle = env.client.get_workflow_handle(view.notification_id)
    await waiting(env, view.notification_id)
    for text in ("{oops", '{"answer": "Yes"}'):
        await handle.signal(
            "answer",
            AnswerSubmission(
                notification_id=view.notification_id,
                answered_by=shop.admins[0].id,
                answer_json=text,
                source=AnswerSource.ui,
            ),
        )
    return view.notification_id


async def question_closed_by_operator(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db)
    view = await ask(env, db, shop, "Parking?")
    await waiting(env, view.notification_id)
    await env.client.get_workflow_handle(view.notification_id).signal(
        "close", CloseRequest(reason="duplicate")
    )
    return view.notification_id


async def question_answered_with_start(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db)
    accepted = await starter.answer_new_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": "Do you deliver?"},
        answered_by=shop.admins[0].id,
        answer={"answer": "Yes"},
        settings=settings_for(TQ),
    )
    return accepted.notification_id


async def question_fan_out_gave_up(env: WorkflowEnvironment, db: SessionFactory) -> str:
    """Every request refused as a configuration error (credentials): open fails for good."""
    shop = await make_shop(db)
    CHANNEL.failing = {
        ":request:": SendError(
            "20003", "Authenticate", extra={"http_status": "401"}, config_error=True
        )
    }
    view = await ask(env, db, shop, "Gift wrapping?")
    return view.notification_id


async def question_open_retried_as_activity(env: WorkflowEnvironment, db: SessionFactory) -> str:
    """The open's local attempt fails retryably (the provider is away for a moment): the
    server-side open_notification activity takes over and the notification is answered."""
    shop = await make_shop(db)
    CHANNEL.failing_once = {":request:": SendError("20500", "Internal error", retryable=True)}
    view = await ask(env, db, shop, "Do you ship abroad?")
    await waiting(env, view.notification_id)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Yes, within the EU"},
    )
    return view.notification_id


async def question_closed_while_fan_out_retried(
    env: WorkflowEnvironment, db: SessionFactory
) -> str:
    """Every request send is rate limited, so the open_notification activity keeps retrying;
    the operator closes the notification meanwhile: the open is cancelled and it ends closed."""
    shop = await make_shop(db)
    CHANNEL.failing = {":request:": SendError("20429", "Too Many Requests", retryable=True)}
    view = await ask(env, db, shop, "Is the café open late?")
    await history_has(env, view.notification_id, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    await env.client.get_workflow_handle(view.notification_id).signal(
        "close", CloseRequest(reason="the customer withdrew")
    )
    return view.notification_id


async def question_delivery_gave_up(env: WorkflowEnvironment, db: SessionFactory) -> str:
    """The customer's send fails non-retryably (a bug, say): deliver_answer gives up."""
    shop = await make_shop(db)
    view = await ask(env, db, shop, "Do you take returns?")
    await waiting(env, view.notification_id)
    CHANNEL.failing = {
        ":answer:customer": ApplicationError("channel bug", type="Bug", non_retryable=True)
    }
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Within 30 days"},
    )
    return view.notification_id


async def question_reminder_failed_then_answered(
    env: WorkflowEnvironment, db: SessionFactory
) -> str:
    """The reminder (best effort) fails for good; the notification waits on, is answered."""
    shop = await make_shop(db)
    view = await ask(env, db, shop, "Open on holidays?")
    await waiting(env, view.notification_id)
    CHANNEL.failing = {
        ":reminder:": SendError("63028", "template mismatch", config_error=True),
    }
    await env.sleep(timedelta(minutes=31))
    await activity_failed(env, view.notification_id)
    CHANNEL.failing = {}
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Closed on holidays"},
    )
    return view.notification_id


async def question_corrected(env: WorkflowEnvironment, db: SessionFactory) -> str:
    """A delivered answer corrected once: the CorrectionWorkflow's history (its id returned)."""
    shop = await make_shop(db)
    view = await ask(env, db, shop, "Do you open on Sunday?")
    await waiting(env, view.notification_id)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Yes, 10am to 2pm."},
    )
    await env.client.get_workflow_handle(view.notification_id).result()
    accepted = await corrections.correct_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Yes, 11am to 2pm."},
        settings=settings_for(TQ),
    )
    return correction_workflow_id(parse_notification_id(view.notification_id), accepted.version)


async def history_has(env: WorkflowEnvironment, public: str, kind: int) -> None:
    """Until the workflow's history holds an event of ``kind``."""
    handle = env.client.get_workflow_handle(public)
    for _ in range(600):
        history = await handle.fetch_history()
        if any(e.event_type == kind for e in history.events):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{public}: no {EventType.Name(kind)} in its history")


async def activity_failed(env: WorkflowEnvironment, public: str) -> None:
    """Until the workflow's history holds a failed activity."""
    await history_has(env, public, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)


SCENARIOS: list[Scenario] = [
    question_answered_free_form,
    support_answered_by_template,
    support_reminded_escalated_expired,
    question_refused_then_answered_by_signal,
    question_closed_by_operator,
    question_answered_with_start,
    question_fan_out_gave_up,
    question_open_retried_as_activity,
    question_closed_while_fan_out_retried,
    question_delivery_gave_up,
    question_reminder_failed_then_answered,
    question_corrected,
    question_answered_with_csat,
]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/replay.db"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        db = session_factory(engine)
        async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(Path(sys.prefix) / "bin" / "temporal-test-server"),
            data_converter=pydantic_data_converter,
        ) as env:
            await register_search_attributes(env.client)
            async with running_worker(env.client, db, TQ, CHANNEL):
                for scenario in SCENARIOS:
                    CHANNEL.failing, CHANNEL.failing_once = {}, {}
                    public = await scenario(env, db)
                    handle = env.client.get_workflow_handle(public)
                    await env.sleep(timedelta(hours=25))
                    await handle.result()
                    CHANNEL.failing = {}
                    history = await handle.fetch_history()
                    path = HERE / f"{scenario.__name__}.json"
                    path.write_text(history.to_json())
                    log.info("wrote %s (%d events)", path, len(history.events))
        await engine.dispose()
    stamp = write_stamp(HERE, "python -m tests.replay.record_histories")
    log.info(
        "recorded on main %s, workflow code %s", stamp["main_commit"], stamp["workflow_sha256"]
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
