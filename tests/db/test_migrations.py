"""The one set of migrations builds exactly ``tables.py`` on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from notifyflow.db.migrate import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
    upgrade_async,
)
from notifyflow.db.session import create_engine
from notifyflow.db.tables import Base

DIALECTS = ["postgresql", "sqlite"]
ScratchDatabase = Callable[[str], str]


def _normalize_predicate(value: Any) -> str:
    # PostgreSQL reflects a predicate with its casts: ((status)::text = 'pending'::text).
    uncast = re.sub(
        r'::(?:"[^"]+"|[a-z_]+(?: (?:varying|precision|with(?:out)? time zone))*)(?:\[\])?',
        "",
        str(value).lower(),
    )
    return re.sub(r"[()\s]+", " ", uncast).strip()


def _differences(connection: Connection) -> list[Any]:
    """Autogenerate's differences, plus partial-index predicates, which it does not compare."""
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    diffs: list[Any] = list(compare_metadata(context, Base.metadata))
    dialect = connection.dialect.name
    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        reflected = {ix["name"]: ix for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            wanted = index.dialect_options[dialect].get("where")
            found = reflected[index.name].get("dialect_options", {}).get(f"{dialect}_where")
            if (wanted is None) != (found is None) or (
                wanted is not None and _normalize_predicate(wanted) != _normalize_predicate(found)
            ):
                diffs.append(("index_predicate", index.name, wanted, found))
    return diffs


async def schema_differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await engine.dispose()


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_upgrade_builds_every_table_and_is_idempotent(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    url = scratch_database(dialect)
    upgrade(url)
    upgrade(url)  # nothing left to do: must not fail or change anything
    # The newest dated file (YYYYMMDD_NNNN_slug.py) is the head every database reaches.
    newest = sorted((MIGRATIONS_DIR / "versions").glob("*.py"))[-1].name.split("_")[1]
    assert current_revision(url) == head_revision() == newest
    assert await table_names(url) == set(Base.metadata.tables) | {"alembic_version"}


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_migrated_schema_equals_tables_py(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    url = scratch_database(dialect)
    upgrade(url)
    assert await schema_differences(url) == []


async def test_session_database_is_at_head_and_equals_tables_py(database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    assert await schema_differences(database_url) == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_comparison_would_notice_a_missing_predicate(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    """Guards the guard: a plain unique index in place of the partial one is a difference."""
    url = scratch_database(dialect)
    upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP INDEX uq_notification_answer_one_accepted")
            await connection.exec_driver_sql(
                "CREATE UNIQUE INDEX uq_notification_answer_one_accepted "
                "ON notification_answer (notification_id)"
            )
    finally:
        await engine.dispose()
    assert [d[0] for d in await schema_differences(url)] == ["index_predicate"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_downgrade_to_base_and_up_again(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    url = scratch_database(dialect)
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert await table_names(url) == {"alembic_version"}
    assert current_revision(url) is None
    upgrade(url)
    assert await schema_differences(url) == []


async def test_upgrade_creates_the_sqlite_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    assert path.is_file()
    assert current_revision(f"sqlite+aiosqlite:///{path}") == head_revision()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_upgrade_works_inside_and_beside_a_running_event_loop(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    # This test's own loop is running in this thread: the sync call must still work.
    inside = scratch_database(dialect)
    upgrade(inside)
    assert current_revision(inside) == head_revision()
    beside = scratch_database(dialect)
    await upgrade_async(beside)
    assert current_revision(beside) == head_revision()


async def test_concurrent_upgrades_in_one_process_take_turns(
    scratch_database: ScratchDatabase,
) -> None:
    url = scratch_database("postgresql")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert await schema_differences(url) == []


async def test_concurrent_upgrades_of_one_postgres_database_from_several_processes(
    scratch_database: ScratchDatabase,
) -> None:
    """The worker and the API may both migrate at start-up: neither may fail."""
    url = scratch_database("postgresql")
    code = "import sys; from notifyflow.db.migrate import upgrade; upgrade(sys.argv[1])"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = [await asyncio.wait_for(p.communicate(), timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in results]
    assert await schema_differences(url) == []


def test_one_head_and_dated_file_names() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    files = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert files and all(re.fullmatch(r"\d{8}_\d{4}_[a-z0-9_]+\.py", f) for f in files), files


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_upgrade_alone_provisions_every_default_template_and_never_overwrites(
    scratch_database: ScratchDatabase, dialect: str
) -> None:
    """A fresh database, `notifyflow db upgrade`, nothing else: every campaign the product
    sends has its default templates (the first release shipped a database that could send
    nothing). An operator's replacement survives the next upgrade."""
    from sqlalchemy import select, update

    from notifyflow.db.seed import DEFAULT_SCOPE, DEFAULT_TEMPLATES
    from notifyflow.db.session import session_factory
    from notifyflow.db.tables import CampaignTemplate
    from notifyflow.models.notification import Campaign

    url = scratch_database(dialect)
    upgrade(url)
    engine = create_engine(url)
    db = session_factory(engine)
    try:
        async with db() as session:
            rows = (await session.scalars(select(CampaignTemplate))).all()
            assert {(r.campaign, r.language) for r in rows} == {
                (str(c), lang) for c, lang in DEFAULT_TEMPLATES
            }
            assert {r.campaign for r in rows} == {c.value for c in Campaign}
            assert {r.merchant_scope for r in rows} == {DEFAULT_SCOPE}
            await session.execute(
                update(CampaignTemplate)
                .where(
                    CampaignTemplate.campaign == Campaign.notification_closed.value,
                    CampaignTemplate.language == "en",
                )
                .values(content_sid="HX" + "ab" * 16, body="Closed: {{1}}")
            )
            await session.commit()
        upgrade(url)
        async with db() as session:
            mine = await session.scalar(
                select(CampaignTemplate).where(
                    CampaignTemplate.campaign == Campaign.notification_closed.value,
                    CampaignTemplate.language == "en",
                )
            )
            assert mine is not None and mine.body == "Closed: {{1}}"
            assert len((await session.scalars(select(CampaignTemplate))).all()) == len(rows)
    finally:
        await engine.dispose()
