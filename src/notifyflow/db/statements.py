"""Statements that write many rows in one round trip, the same on PostgreSQL and SQLite.

The lifecycle's hot paths claim and record several sends at once (a fan-out to every admin):
one statement for all of them instead of one per person keeps the SQL per notification flat as
a team grows (issue 17)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import case
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
