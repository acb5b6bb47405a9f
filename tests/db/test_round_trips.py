"""What a session costs in round trips to the server: a unit of work of one statement in
``autocommit`` (db/session.py) sends no BEGIN and no COMMIT or ROLLBACK; a pooled connection is
pinged only after it sat idle (``NOTIFYFLOW_DB_PING_AFTER_IDLE_SECONDS``) or when the caller
asks (``ping_on_checkout``); and the benchmark's counter (bench/instrument.py) counts exactly
what is sent, pings included."""

from __future__ import annotations

import asyncio

from bench.instrument import SqlCounters
from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notifyflow.db.session import autocommit, create_engine, ping_on_checkout, session_factory


async def _read(engine: AsyncEngine, counters: SqlCounters, *, in_autocommit: bool) -> int:
    """Round trips of one read of one statement in a session of its own."""
    before = int(counters.snapshot()["round_trips"])
    async with session_factory(engine)() as session:
        if in_autocommit:
            await autocommit(session)
        assert (await session.execute(select(literal(1)))).scalar_one() == 1
    return int(counters.snapshot()["round_trips"]) - before


async def test_a_read_in_autocommit_needs_no_transaction(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, ping_after_idle=60)
    counters = SqlCounters(engine)
    try:
        if engine.dialect.name == "postgresql":
            # A new connection is not pinged: BEGIN, SELECT, ROLLBACK.
            assert await _read(engine, counters, in_autocommit=False) == 3
            # Nor one handed back moments ago; in autocommit, the SELECT alone.
            assert await _read(engine, counters, in_autocommit=False) == 3
            assert await _read(engine, counters, in_autocommit=True) == 1
        else:
            # SQLite has no server and no autocommit switch here: BEGIN, SELECT, ROLLBACK.
            assert await _read(engine, counters, in_autocommit=True) == 3
    finally:
        await engine.dispose()


async def test_a_connection_is_pinged_after_sitting_idle_or_when_asked(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, ping_after_idle=0.2)
    every_time = create_engine(database_url, pool_size=1, ping_after_idle=0)
    counters, counters_every_time = SqlCounters(engine), SqlCounters(every_time)
    try:
        if engine.dialect.name != "postgresql":
            # SQLite: a file, nothing to ping.
            await _read(engine, counters, in_autocommit=True)
            await asyncio.sleep(0.3)
            assert await _read(engine, counters, in_autocommit=True) == 3
            return
        await _read(engine, counters, in_autocommit=True)  # connects
        assert await _read(engine, counters, in_autocommit=True) == 1
        await asyncio.sleep(0.3)
        # Idle past the threshold: ping, SELECT.
        assert await _read(engine, counters, in_autocommit=True) == 2
        with ping_on_checkout():
            assert await _read(engine, counters, in_autocommit=True) == 2
        assert await _read(engine, counters, in_autocommit=True) == 1
        # 0: at every checkout, as SQLAlchemy's pool_pre_ping.
        await _read(every_time, counters_every_time, in_autocommit=True)
        assert await _read(every_time, counters_every_time, in_autocommit=True) == 2
    finally:
        await engine.dispose()
        await every_time.dispose()
