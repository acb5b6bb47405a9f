"""Engines and sessions, one engine per process and URL."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+psycopg://`` or ``sqlite+aiosqlite://``).

    ``pre_ping``: test each pooled PostgreSQL connection with a round trip when it is taken
    (a request never meets a connection the server dropped). The worker turns it off: its
    activities are retried anyway, and the first statement on a dropped connection
    invalidates the whole pool (SQLAlchemy's disconnect handling), so a database restart
    costs one retried attempt instead of a round trip before every transaction."""
    from notifyflow.tracing import instrument_engine

    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        sync: Engine = engine.sync_engine
        event.listen(sync, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping
        )
    instrument_engine(engine)  # a span per statement when tracing is on; nothing otherwise
    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


async def autocommit(session: AsyncSession) -> None:
    """Run this session's statements without a transaction on PostgreSQL — for a read of one
    statement, which is consistent on its own: saves the BEGIN and ROLLBACK round trips. Call
    it before the session's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
