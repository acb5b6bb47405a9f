"""The quick answers of the instruction message cost routing no SQL statement: opening a
notification for a merchant with answer templates runs as many statements as for one
without (and the instruction message lists them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from bench.instrument import SqlCounters
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from notifyflow import answer_templates
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.db.tables import Message
from notifyflow.models.answer_templates import AnswerTemplateCreate
from notifyflow.models.notification import NotificationType
from notifyflow.models.workflow_io import OpenInput
from tests.activities.test_activities import FakeOutreach, _lifecycle, _question
from tests.figures import figure
from tests.fixtures.database import MerchantFactory


@pytest_asyncio.fixture
async def counted(database_url: str) -> AsyncIterator[tuple[SessionFactory, SqlCounters]]:
    """A session factory on an engine of its own, whose statements are counted."""
    engine = create_engine(database_url)
    try:
        yield session_factory(engine), SqlCounters(engine)
    finally:
        await engine.dispose()


async def _open_statements(
    db: SessionFactory, counters: SqlCounters, make_merchant: MerchantFactory, codes: list[str]
) -> tuple[int, str]:
    shop = await make_merchant(admins=2)
    for code in codes:
        await answer_templates.create(
            db,
            shop.merchant_id,
            AnswerTemplateCreate(
                code=code,
                type=NotificationType.user_question_request,
                answer={"answer": f"About {code}."},
            ),
        )
    notification = await _question(db, shop)
    before = counters.statements
    await ActivityEnvironment().run(
        _lifecycle(db, FakeOutreach(db)).open_notification,
        OpenInput(notification_id=notification.id),
    )
    spent = counters.statements - before
    async with db() as session:
        instruction = await session.scalar(
            select(Message.content)
            .where(Message.other_data["kind"].as_string() == "notification_instruction")
            .where(Message.content.contains(f"NOTIF_{notification.id} "))
            .limit(1)
        )
    assert instruction is not None
    return spent, instruction


async def test_quick_answers_add_no_statement_to_routing(
    counted: tuple[SessionFactory, SqlCounters], make_merchant: MerchantFactory
) -> None:
    db, counters = counted
    bare, plain = await _open_statements(db, counters, make_merchant, [])
    with_codes, listed = await _open_statements(
        db, counters, make_merchant, ["returns", "hours", "gift"]
    )
    assert "Quick answers" not in plain
    assert "Quick answers: #gift, #hours, #returns" in listed
    figure("open_notification SQL statements, merchant without answer templates", bare)
    figure("open_notification SQL statements, merchant with 3 answer templates", with_codes)
    assert with_codes == bare
