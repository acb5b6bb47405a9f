"""What a session costs in round trips to the server: the worker's engine pings no pooled
connection, a read in ``autocommit`` sends no BEGIN or ROLLBACK (db/session.py), and the
benchmark's counter (bench/instrument.py) counts exactly those."""

from __future__ import annotations

from bench.instrument import SqlCounters
from sqlalchemy import literal, select

from notifyflow.config import Settings
from notifyflow.db.session import autocommit, create_engine, session_factory
from notifyflow.worker import worker_engine


async def _read(engine, *, in_autocommit: bool) -> int:
    """Round trips of one read of one statement in a session of its own."""
    counters = SqlCounters(engine)
    async with session_factory(engine)() as session:
        if in_autocommit:
            await autocommit(session)
        assert (await session.execute(select(literal(1)))).scalar_one() == 1
    return int(counters.snapshot()["round_trips"])


async def test_the_worker_pings_no_connection_and_a_read_needs_no_transaction(
    database_url: str,
) -> None:
    api = create_engine(database_url)
    worker = worker_engine(Settings(database_url=database_url))
    try:
        if api.dialect.name == "postgresql":
            # The API: pre-ping, BEGIN, SELECT, ROLLBACK; in autocommit: pre-ping, SELECT.
            assert await _read(api, in_autocommit=False) == 4
            assert await _read(api, in_autocommit=True) == 2
            # The worker: no pre-ping.
            assert await _read(worker, in_autocommit=False) == 3
            assert await _read(worker, in_autocommit=True) == 1
        else:
            # SQLite has no server and no autocommit switch here: BEGIN, SELECT, ROLLBACK.
            assert await _read(worker, in_autocommit=True) == 3
    finally:
        await api.dispose()
        await worker.dispose()
