"""The many-row INSERT and UPDATE of the hot paths (db/statements.py): what they write, that
their SQL is compiled once and then taken from SQLAlchemy's cache whatever the number of rows,
and that a step's writes combined into one statement are built once per combination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select

from notifyflow.db.session import SessionFactory
from notifyflow.db.statements import (
    Writes,
    bind_update,
    dialect_name,
    execute,
    insert_rows,
    update_rows,
)
from notifyflow.db.tables import ConversationUser, Message
from tests.fixtures.database import unique_phone


def _rows(conversation_id: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "conversation_id": conversation_id,
            "role": "assistant",
            "content": f"réponse n°{i} — «quoted» \\ \"and\" 'more'",
            "other_data": {"kind": "test", "n": i, "nested": {"list": [1, None, "ü"]}},
            "created_at": datetime(2026, 12, 1, 10, i, 30, 123456, tzinfo=UTC),
        }
        for i in range(count)
    ]


async def _insert_messages(db: SessionFactory, conversation_id: int, count: int) -> None:
    async with db() as session:
        await execute(
            session, insert_rows(dialect_name(session), Message, _rows(conversation_id, count))
        )
        await session.commit()


async def _messages(db: SessionFactory, conversation_id: int) -> list[Message]:
    """The conversation's assistant messages, oldest first (each row has its own time)."""
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(Message)
                    .where(Message.conversation_id == conversation_id, Message.role == "assistant")
                    .order_by(Message.created_at)
                )
            ).all()
        )


async def test_rows_are_written_as_given_with_the_columns_defaults(
    db: SessionFactory, make_merchant
):
    merchant = await make_merchant()
    await _insert_messages(db, merchant.conversation_id, 3)
    stored = await _messages(db, merchant.conversation_id)
    assert [(m.content, m.other_data, m.created_at) for m in stored] == [
        (r["content"], r["other_data"], r["created_at"]) for r in _rows(merchant.conversation_id, 3)
    ]
    # Columns not given take their defaults (no payload, no provider id).
    assert all(m.whatsapp_payload is None and m.provider_message_id is None for m in stored)


async def test_a_claim_of_several_keys_returns_only_the_new_ones(db: SessionFactory) -> None:
    now = datetime.now(UTC)
    phones = [unique_phone() for _ in range(2)]

    def people(numbers: list[str]) -> list[dict[str, Any]]:
        return [{"phone": p, "name": f"Person {p[-4:]}", "created_at": now} for p in numbers]

    async with db() as session:
        dialect = dialect_name(session)
        first = await execute(
            session,
            insert_rows(
                dialect, ConversationUser, people(phones[:1]), unique=["phone"], returning=["phone"]
            ),
        )
        assert first.scalars().all() == phones[:1]
        # The first key exists already: left as it is, and only the new one comes back.
        again = await execute(
            session,
            insert_rows(
                dialect, ConversationUser, people(phones), unique=["phone"], returning=["phone"]
            ),
        )
        assert again.scalars().all() == phones[1:]
        await session.rollback()


async def test_postgresql_compiles_the_insert_once_for_any_number_of_rows(
    db: SessionFactory, db_engine, make_merchant
):
    merchant = await make_merchant()
    hits: list[Any] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO message"):
            hits.append(context.cache_hit)

    event.listen(db_engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db() as session:
            dialect = dialect_name(session)
            for count in (1, 2, 5, 2):
                await execute(
                    session, insert_rows(dialect, Message, _rows(merchant.conversation_id, count))
                )
            await session.rollback()
    finally:
        event.remove(db_engine.sync_engine, "before_cursor_execute", seen)
    assert len(hits) == 4
    if dialect == "postgresql":
        # Compiled at most for the first (another test may have compiled it already), then
        # taken from the cache however many rows follow.
        from sqlalchemy.engine.interfaces import CacheStats

        assert hits[1:] == [CacheStats.CACHE_HIT] * 3


async def test_an_update_of_rows_gives_each_its_own_values_and_all_the_same_ones(
    db: SessionFactory, make_merchant
):
    merchant = await make_merchant()
    await _insert_messages(db, merchant.conversation_id, 3)
    first, second, third = await _messages(db, merchant.conversation_id)
    sid = f"SM{uuid.uuid4().hex}"  # provider ids are unique across the database
    async with db() as session:
        await execute(
            session,
            update_rows(
                dialect_name(session),
                Message,
                [
                    {"id": first.id, "provider_message_id": f"{sid}1"},
                    {"id": third.id, "provider_message_id": f"{sid}3 — ü"},
                ],
                key="id",
                same={"content": "sent", "other_data": {"sent": True}},
                name="test",
            ),
        )
        await session.commit()
    after = await _messages(db, merchant.conversation_id)
    assert [(m.provider_message_id, m.content, m.other_data) for m in after] == [
        (f"{sid}1", "sent", {"sent": True}),
        (None, second.content, second.other_data),  # not named: untouched
        (f"{sid}3 — ü", "sent", {"sent": True}),
    ]


async def test_a_steps_writes_are_combined_once_and_carry_each_calls_values(
    db: SessionFactory, make_merchant
):
    """Two steps of the same shape: one statement on PostgreSQL, the same combined construct
    both times (built once), and each step's own values written."""
    merchant = await make_merchant()
    combined: list[Any] = []
    for n in range(2):
        async with db() as session:
            dialect = dialect_name(session)
            writes = Writes()
            writes.add(insert_rows(dialect, Message, _rows(merchant.conversation_id, n + 1)))
            main = bind_update(
                ConversationUser,
                where="id",
                key=merchant.customer_id,
                values={"name": f"Renamed {n}"},
                name="renamed",
                returning=["name"],
            )
            if dialect == "postgresql":
                from notifyflow.db.statements import _combined, bound

                combined.append(_combined([bound(s) for s in writes._quiet] + [main]).statement)
            result = await writes.run(session, main)
            assert result is not None
            assert result.scalars().all() == [f"Renamed {n}"]
            await session.commit()
    assert len(await _messages(db, merchant.conversation_id)) == 1 + 2
    if combined:
        assert combined[0] is combined[1]


def test_two_parts_binding_one_name_are_refused() -> None:
    from notifyflow.db.statements import _combined

    one = insert_rows("postgresql", Message, _rows(1, 1))
    with pytest.raises(ValueError, match="message__rows"):
        _combined([one, insert_rows("postgresql", Message, _rows(1, 2))])
