"""Engines and sessions, one engine per process and URL."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

SessionFactory = async_sessionmaker[AsyncSession]

# A pooled PostgreSQL connection idle this long is tested before it is handed out (1 s:
# NOTIFYFLOW_DB_PING_AFTER_IDLE_SECONDS' default).
PING_AFTER_IDLE = 1.0
_IDLE_SINCE = "notifyflow_idle_since"
_ALWAYS_PING: ContextVar[bool] = ContextVar("notifyflow_always_ping", default=False)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(
    url: str, *, pool_size: int = 10, ping_after_idle: float = PING_AFTER_IDLE
) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+psycopg://`` or ``sqlite+aiosqlite://``).

    A PostgreSQL connection taken from the pool is tested with a round trip (a ping; one that
    fails makes the pool reconnect) when it sat there ``ping_after_idle`` seconds or more
    (0: every time), or when the caller asks for it (:func:`ping_on_checkout`): the worker's
    record of sends the provider just accepted always does — a connection the server dropped
    meanwhile must not fail that record (its retry would have to find the sends at the
    provider, which Instagram cannot). A connection handed back moments ago is not pinged: a
    busy worker takes one several times a second, and the ping was a round trip per
    statement."""
    from notifyflow.tracing import instrument_engine

    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        sync: Engine = engine.sync_engine
        event.listen(sync, "connect", _sqlite_pragmas)
    else:
        # LIFO: the connections in use stay few and warm (no ping), the rest age past the
        # idle threshold and are tested before their next use.
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True
        )
        _ping_idle_connections(engine.sync_engine, ping_after_idle)
    instrument_engine(engine)  # a span per statement when tracing is on; nothing otherwise
    return engine


@contextlib.contextmanager
def ping_on_checkout() -> Iterator[None]:
    """Connections taken from the pool inside this block are pinged however recently they
    were used: for a write that must not fail on a connection the server dropped."""
    token = _ALWAYS_PING.set(True)
    try:
        yield
    finally:
        _ALWAYS_PING.reset(token)


def _ping_idle_connections(sync: Engine, after_idle: float) -> None:
    def checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            # Cleared by the pool when it closes the connection: a new one starts without.
            record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None:
            return  # connected just now
        if time.monotonic() - since < after_idle and not _ALWAYS_PING.get():
            return
        dialect = sync.dialect
        try:
            # Looked up at each call: the benchmark counts the round trips it makes.
            alive = dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as err:
            if not dialect.is_disconnect(err, dbapi_connection, None):
                raise
            # As pool_pre_ping: reconnect, and drop the pool's connections older than this.
            raise exc.InvalidatePoolError(f"ping failed: {err}") from err
        if not alive:
            raise exc.InvalidatePoolError("ping failed")

    event.listen(sync.pool, "checkin", checkin)
    event.listen(sync.pool, "checkout", checkout)


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


async def autocommit(session: AsyncSession) -> None:
    """Run this session's statements without a transaction on PostgreSQL — for a unit of work
    that is one statement (a read, or a step's writes combined by ``Writes``), atomic and
    consistent on its own: saves the BEGIN and COMMIT/ROLLBACK round trips. Call it before the
    session's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
