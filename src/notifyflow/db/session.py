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


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+psycopg://`` or ``sqlite+aiosqlite://``).

    PostgreSQL connections are tested with a round trip when taken from the pool (pre-ping):
    in the worker, the record of a step's sends comes right after the provider accepted them,
    and a connection the server dropped meanwhile must not fail that record (its retry would
    have to find the sends at the provider, which Instagram cannot)."""
    from notifyflow.tracing import instrument_engine

    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        sync: Engine = engine.sync_engine
        event.listen(sync, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
        )
    instrument_engine(engine)  # a span per statement when tracing is on; nothing otherwise
    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


async def autocommit(session: AsyncSession) -> None:
    """Run this session's statements without a transaction on PostgreSQL — for a unit of work
    that is one statement (a read, or a step's writes combined by ``Writes``), atomic and
    consistent on its own: saves the BEGIN and COMMIT/ROLLBACK round trips. Call it before the
    session's first statement."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
