"""Alembic environment for notifyflow, configured in code (see ``notifyflow.db.migrate``).

The database comes, in order, from an open connection in ``config.attributes["connection"]``, a
URL in ``config.attributes["database_url"]``, the ``sqlalchemy.url`` option, or the settings'
``DATABASE_URL``. The application's async URLs (``postgresql+psycopg://``,
``sqlite+aiosqlite://``) work as they are, as do plain sync URLs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection, create_engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from notifyflow.db.tables import Base
from notifyflow.db.types import UTCDateTime

config = context.config
target_metadata = Base.metadata

# Any constant shared by every process migrating the same PostgreSQL database: the worker and the
# API may both start with an upgrade, and the second must wait, then find nothing to do.
_PG_LOCK_KEY = 0x6E6F7469  # "noti"


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from notifyflow.config import get_settings

    return get_settings().database_url


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Migrations must not import application types (they may change later): write the stored
    # type that UTCDateTime wraps instead.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _next_revision_id(_context: Any, _revision: Any, directives: list[Any]) -> None:
    # Sequential ids (0002, 0003, …) after the dated prefix read better than random hex.
    head = ScriptDirectory.from_config(config).get_current_head()
    if directives and head and head.isdigit():
        directives[0].rev_id = f"{int(head) + 1:04d}"


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        process_revision_directives=_next_revision_id,
        **kwargs,
    )


def _migrate(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        context.run_migrations()


async def _migrate_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
    finally:
        await engine.dispose()


def _run_coroutine(factory: Callable[[], Awaitable[None]]) -> None:
    """``asyncio.run`` where possible; from inside a running loop (this thread's), a private
    thread with its own loop, because a loop cannot be nested."""

    async def main() -> None:
        await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(main())
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alembic") as executor:
        executor.submit(asyncio.run, main()).result()


def run_migrations_offline() -> None:
    """``--sql`` mode: write the DDL instead of running it."""
    url = make_url(_database_url())
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = _database_url()
    if make_url(url).get_dialect().is_async:
        _run_coroutine(lambda: _migrate_async(url))
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as sync_connection:
            _migrate(sync_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
