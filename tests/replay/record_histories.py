"""Record the histories that CI replays: ``python -m tests.replay.record_histories``.

Runs each scenario on the time-skipping server with a throwaway SQLite database, the offline
AI and a recording channel, and writes ``tests/replay/histories/<scenario>.json``. Re-record
only on purpose (a workflow change that is meant to be incompatible must use
``workflow.patched`` instead, so old histories keep replaying).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from notifyflow import starter
from notifyflow.db.migrate import upgrade
from notifyflow.db.seed import ensure_default_templates
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.models.workflow_io import AnswerSource, AnswerSubmission, CloseRequest
from tests.fixtures.lifecycle import RecordingChannel, make_shop, running_worker, settings_for
from tests.fixtures.temporal import register_search_attributes

HERE = Path(__file__).parent / "histories"
log = logging.getLogger("record_histories")
TQ = "replay-recording"

Scenario = Callable[[WorkflowEnvironment, SessionFactory], Awaitable[str]]


async def question_answered_free_form(env: WorkflowEnvironment, db: SessionFactory) -> str:
    shop = await make_shop(db)
    view = await starter.request_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": "What are your business hours?"},
        settings=settings_for(TQ),
    )
    await asyncio.sleep(0.3)
    await starter.answer_notification(
        env.client,
        db,
        view.notification_id,
        answered_by=shop.admins[0].id,
        answer={"answer": "Mon-Fri 9am-5pm"},
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
    await asyncio.sleep(0.3)
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
    view = await starter.request_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": "Pets allowed?"},
        settings=settings_for(TQ),
    )
    handle = env.client.get_workflow_handle(view.notification_id)
    await asyncio.sleep(0.3)
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
    view = await starter.request_notification(
        env.client,
        db,
        type="user_question_request",
        conversation_id=shop.conversation_id,
        context={"question": "Parking?"},
        settings=settings_for(TQ),
    )
    await asyncio.sleep(0.3)
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


SCENARIOS: list[Scenario] = [
    question_answered_free_form,
    support_answered_by_template,
    support_reminded_escalated_expired,
    question_refused_then_answered_by_signal,
    question_closed_by_operator,
    question_answered_with_start,
]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/replay.db"
        await asyncio.to_thread(upgrade, url)
        engine = create_engine(url)
        db = session_factory(engine)
        await ensure_default_templates(db)
        async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(Path(sys.prefix) / "bin" / "temporal-test-server"),
            data_converter=pydantic_data_converter,
        ) as env:
            await register_search_attributes(env.client)
            async with running_worker(env.client, db, TQ, RecordingChannel()):
                for scenario in SCENARIOS:
                    public = await scenario(env, db)
                    handle = env.client.get_workflow_handle(public)
                    await env.sleep(timedelta(hours=25))
                    await handle.result()
                    history = await handle.fetch_history()
                    path = HERE / f"{scenario.__name__}.json"
                    path.write_text(history.to_json())
                    log.info("wrote %s (%d events)", path, len(history.events))
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
