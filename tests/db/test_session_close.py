"""A session's close on leaving ``async with``: inline while it need not wait (no trip through
the event loop's queue, which under load is a wait behind every other notification's work),
and, once it must wait, finished whatever happens to the caller — a cancelled activity still
hands its connection back to the pool (the guarantee SQLAlchemy's own exit gives)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from notifyflow.db.session import SessionFactory, run_inline_first


async def _loop_ran_meanwhile(awaitable: Any) -> tuple[Any, bool]:
    """What ``awaitable`` returned, and whether the event loop ran a callback meanwhile."""
    ran: list[bool] = []
    asyncio.get_running_loop().call_soon(ran.append, True)
    result = await awaitable
    return result, bool(ran)


async def test_a_coroutine_that_need_not_wait_runs_without_a_trip_through_the_loop() -> None:
    async def quick() -> str:
        return "closed"

    result, loop_ran = await _loop_ran_meanwhile(run_inline_first(quick()))
    assert result == "closed"
    assert not loop_ran
    # The control: awaited through a task of its own (SQLAlchemy's way), the loop runs first.
    result, loop_ran = await _loop_ran_meanwhile(asyncio.shield(asyncio.ensure_future(quick())))
    assert result == "closed" and loop_ran


async def test_a_coroutine_that_waits_is_carried_on_with_what_it_waited_for() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[str] = loop.create_future()
    second: asyncio.Future[str] = loop.create_future()
    seen: list[str] = []

    async def waits() -> str:
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield, as psycopg's fairness yield is
        seen.append(await second)
        return "+".join(seen)

    loop.call_soon(first.set_result, "rolled back")
    loop.call_soon(lambda: loop.call_soon(second.set_result, "returned"))
    assert await run_inline_first(waits()) == "rolled back+returned"


async def test_an_error_after_the_first_wait_reaches_the_caller() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the connection broke")

    with pytest.raises(RuntimeError, match="the connection broke"):
        await run_inline_first(fails())


async def test_a_cancelled_caller_waits_for_the_close_then_is_cancelled() -> None:
    gate = asyncio.Event()
    finished: list[bool] = []

    async def close() -> None:
        await gate.wait()
        finished.append(True)

    caller = asyncio.ensure_future(run_inline_first(close()))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0.01)
    assert not caller.done(), "the caller returned before its close finished"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert finished == [True]


async def test_a_session_cancelled_while_it_closes_still_returns_its_connection(
    db: SessionFactory,
) -> None:
    engine = db.kw["bind"]
    before = engine.sync_engine.pool.checkedout()
    gate = asyncio.Event()
    inside = asyncio.Event()

    async def work() -> None:
        async with db() as session:
            assert (await session.execute(select(1))).scalar_one() == 1
            real_close = session.close

            async def slow_close() -> None:
                await gate.wait()  # the close must wait: it leaves the caller's task
                await real_close()

            session.close = slow_close  # type: ignore[method-assign]
            inside.set()

    task = asyncio.ensure_future(work())
    await inside.wait()
    await asyncio.sleep(0.01)
    assert engine.sync_engine.pool.checkedout() == before + 1
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.sync_engine.pool.checkedout() == before


async def test_sessions_hand_their_connections_back_after_reads_and_writes(
    db: SessionFactory,
) -> None:
    engine = db.kw["bind"]
    before = engine.sync_engine.pool.checkedout()
    for _ in range(3):
        async with db() as session:
            await session.execute(select(1))  # a transaction left open: the close rolls back
        async with db() as session:
            await session.execute(select(1))
            await session.commit()
    assert engine.sync_engine.pool.checkedout() == before
