"""Statements that write many rows in one round trip, the same on PostgreSQL and SQLite.

The lifecycle's hot paths claim and record several sends at once (a fan-out to every admin):
one statement for all of them instead of one per person keeps the SQL per notification flat as
a team grows (issue 17)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Result, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Insert


def dialect_name(session: AsyncSession) -> str:
    """The session's dialect, without opening a connection."""
    return session.get_bind().dialect.name


def insert_ignoring_duplicates(
    dialect: str, table: Any, rows: Sequence[Mapping[str, Any]], *, unique: Sequence[str]
) -> Insert:
    """``INSERT … VALUES (…), (…) ON CONFLICT (unique) DO NOTHING``: a row whose unique key
    exists already is left as it is (with ``RETURNING``, only the rows written come back)."""
    if dialect == "postgresql":
        return (
            postgresql.insert(table)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(unique))
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(table)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(unique))
        )
    raise NotImplementedError(f"{dialect} is not supported")


def per_row(
    key: ColumnElement[Any] | QueryableAttribute[Any], values: Mapping[Any, Any]
) -> ColumnElement[Any]:
    """``CASE key WHEN k1 THEN v1 …``: a different value per row in one UPDATE (portable,
    where ``UPDATE … FROM (VALUES …)`` is spelt differently on SQLite)."""
    return case(dict(values), value=key)


class Writes:
    """The writes of one transaction, in as few round trips as the dialect allows.

    On PostgreSQL the statements added with :meth:`add` ride as data-modifying CTEs of the one
    statement whose rows are wanted (``main``), so a step's writes are one statement; they
    must touch different rows (CTEs share one snapshot and cannot see each other's changes).
    On SQLite, which has no DML in CTEs, each is its own statement in the same transaction.
    Values that SQLAlchemy would compute at execution (``onupdate``) must be given: a CTE
    cannot take them."""

    def __init__(self) -> None:
        self._quiet: list[Any] = []

    def add(self, stmt: Any) -> None:
        self._quiet.append(stmt)

    def __bool__(self) -> bool:
        return bool(self._quiet)

    async def run(self, session: AsyncSession, main: Any | None = None) -> Result[Any] | None:
        """Execute every statement added, and ``main`` (returned: its result)."""
        quiet, self._quiet = self._quiet, []
        if dialect_name(session) == "postgresql" and quiet:
            if main is None:
                main, quiet = quiet[-1], quiet[:-1]
            if quiet:
                main = main.add_cte(*(s.cte(f"w{i}") for i, s in enumerate(quiet)))
            combined: Result[Any] = await session.execute(main)
            return combined
        for stmt in quiet:
            await session.execute(stmt)
        if main is None:
            return None
        result: Result[Any] = await session.execute(main)
        return result
