"""Schema migrations, driven from code: no ``alembic.ini`` is needed.

``notifyflow db upgrade`` and the embedded stack call :func:`upgrade`; async callers use
:func:`upgrade_async`. To write a new migration from a checkout::

    python -c "from notifyflow.db.migrate import revision; revision('add x', 'sqlite+aiosqlite:///./scratch.db')"

(after upgrading that scratch database), then review the generated file in
``src/notifyflow/db/migrations/versions/``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import create_engine, make_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Dated file names, oldest first in a directory listing.
FILE_TEMPLATE = "%(year)d%(month).2d%(day).2d_%(rev)s_%(slug)s"
# Alembic keeps the running migration in module-level state (``alembic.context``), so two
# upgrades in one process must not overlap; between processes, env.py's advisory lock serializes.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations and ``database_url``.

    The URL travels in ``config.attributes`` rather than ``sqlalchemy.url``, where ConfigParser
    would take a ``%`` of a percent-encoded password for interpolation.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: each % of the template is written as %%.
    config.set_main_option("file_template", FILE_TEMPLATE.replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the directory of an SQLite file if missing (SQLite creates the file, not its
    directory). Other URLs, and in-memory SQLite, are left alone."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class UpgradeResult:
    """What one :func:`upgrade` did: ``notifyflow db upgrade`` prints it."""

    from_revision: str | None
    to_revision: str | None
    # (revision, description) of each migration applied, in the order applied.
    applied: list[tuple[str, str]] = field(default_factory=list)
    templates_provisioned: int = 0


def _applied_between(before: str | None, after: str | None) -> list[tuple[str, str]]:
    if after is None or after == before:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    scripts = list(script.iterate_revisions(after, before or "base"))
    return [
        (s.revision, " ".join((s.doc or "").split("\n\n")[0].split())) for s in reversed(scripts)
    ]


def upgrade(database_url: str, revision: str = "head") -> UpgradeResult:
    """Bring the database at ``database_url`` to ``revision`` (the latest by default).

    At head, the default campaign templates that are missing are inserted too.
    Idempotent: an up-to-date database is left as it is. Synchronous, for the CLI; safe to call
    from any thread, even one whose event loop is running (which it then blocks while the
    migration runs on a private loop in a helper thread). Concurrent upgrades take turns.
    """
    ensure_sqlite_directory(database_url)
    log.info("upgrading %s to %s", make_url(database_url).render_as_string(), revision)
    with _ALEMBIC_LOCK:
        before = current_revision(database_url)
        command.upgrade(alembic_config(database_url), revision)
        after = current_revision(database_url)
    provisioned = 0
    if revision == "head":
        # The shipped default templates are data the product cannot send without: every
        # upgrade provisions the missing ones (never overwriting an operator's), so a fresh
        # database serves its first notification with no other step. Done here rather than in
        # a data migration so a default added in a later release reaches old databases too.
        from notifyflow.db.seed import provision_default_templates_sync

        provisioned = provision_default_templates_sync(database_url)
    return UpgradeResult(before, after, _applied_between(before, after), provisioned)


async def upgrade_async(database_url: str, revision: str = "head") -> UpgradeResult:
    """:func:`upgrade` in a worker thread, so the caller's event loop keeps running."""
    return await asyncio.to_thread(upgrade, database_url, revision)


def head_revision() -> str | None:
    """The newest revision the packaged migrations define."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, ``None`` when it was never migrated."""
    url = make_url(database_url)
    # A short-lived sync engine: this is a one-off read, usable where no loop runs.
    sync_url = url.set(drivername=_SYNC_DRIVERS.get(url.drivername, url.drivername))
    engine = create_engine(sync_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def revision(message: str, database_url: str, *, autogenerate: bool = True) -> None:
    """Write a new migration file by comparing ``tables.py`` with the database (developers)."""
    with _ALEMBIC_LOCK:
        command.revision(alembic_config(database_url), message=message, autogenerate=autogenerate)


# The application's async drivers and their synchronous twins, for one-off reads.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+psycopg_async": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
}
