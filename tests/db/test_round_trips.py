"""What a session costs in round trips to the server: a unit of work of one statement in
``autocommit`` (db/session.py) sends no BEGIN and no COMMIT or ROLLBACK, and the benchmark's
counter (bench/instrument.py) counts exactly what is sent, the pool's pre-ping included."""

from __future__ import annotations

from bench.instrument import SqlCounters
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifyflow.db.session import autocommit, create_engine, session_factory


async def _read(engine: AsyncEngine, counters: SqlCounters, *, in_autocommit: bool) -> int:
    """Round trips of one read of one statement in a session of its own."""
    before = int(counters.snapshot()["round_trips"])
    async with session_factory(engine)() as session:
        if in_autocommit:
            await autocommit(session)
        assert (await session.execute(select(literal(1)))).scalar_one() == 1
    return int(counters.snapshot()["round_trips"]) - before


async def test_a_read_in_autocommit_needs_no_transaction(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    counters = SqlCounters(engine)
    try:
        if engine.dialect.name == "postgresql":
            # A new connection is not pinged: BEGIN, SELECT, ROLLBACK.
            assert await _read(engine, counters, in_autocommit=False) == 3
            # The pooled one is: pre-ping, BEGIN, SELECT, ROLLBACK; in autocommit, two.
            assert await _read(engine, counters, in_autocommit=False) == 4
            assert await _read(engine, counters, in_autocommit=True) == 2
        else:
            # SQLite has no server and no autocommit switch here: BEGIN, SELECT, ROLLBACK.
            assert await _read(engine, counters, in_autocommit=True) == 3
    finally:
        await engine.dispose()
