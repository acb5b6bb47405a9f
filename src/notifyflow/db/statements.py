"""Statements that write many rows in one round trip, the same on PostgreSQL and SQLite.

The lifecycle's hot paths claim and record several sends at once (a fan-out to every admin):
one statement for all of them instead of one per person keeps the SQL per notification flat as
a team grows (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Result,
    Table,
    Text,
    bindparam,
    case,
    cast,
    column,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator


def dialect_name(session: AsyncSession) -> str:
    """The session's dialect, without opening a connection."""
    return session.get_bind().dialect.name


def factory_dialect(db: async_sessionmaker[AsyncSession]) -> str:
    """The dialect of the sessions a factory makes, without making one."""
    return str(db.kw["bind"].dialect.name)


def insert_rows(dialect: str, table: Any, rows: Sequence[Mapping[str, Any]]) -> Insert:
    """An INSERT of several rows (every row with the same keys) in one statement.

    On PostgreSQL the rows travel as one JSON parameter, ``INSERT … SELECT … FROM
    json_to_recordset(:rows) AS r(col type, …)``: its SQL depends only on the table and the
    columns, so SQLAlchemy compiles it once and takes it from its cache after that. A multi-row
    ``VALUES (…), (…)`` is never cached (its SQL changes with every row count and SQLAlchemy
    keeps no cache key for it): compiling those statements again on every step was 7 % of the
    worker's CPU. On SQLite (no statement of these rides in a CTE there), ``VALUES (…), (…)``."""
    if dialect == "postgresql":
        return _from_recordset(postgresql.insert, table, rows)
    if dialect == "sqlite":
        return insert(table).values(list(rows))
    raise NotImplementedError(f"{dialect} is not supported")


def insert_ignoring_duplicates(
    dialect: str, table: Any, rows: Sequence[Mapping[str, Any]], *, unique: Sequence[str]
) -> Insert:
    """:func:`insert_rows` with ``ON CONFLICT (unique) DO NOTHING``: a row whose unique key
    exists already is left as it is (with ``RETURNING``, only the rows written come back)."""
    if dialect == "postgresql":
        stmt: Insert = _from_recordset(postgresql.insert, table, rows)
        return stmt.on_conflict_do_nothing(index_elements=list(unique))  # type: ignore[attr-defined,no-any-return]
    if dialect == "sqlite":
        return (
            sqlite.insert(table)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=list(unique))
        )
    raise NotImplementedError(f"{dialect} is not supported")


def _from_recordset(make: Any, table: Any, rows: Sequence[Mapping[str, Any]]) -> Insert:
    target: Table = getattr(table, "__table__", table)
    if not rows:
        raise ValueError("an insert of rows needs at least one row")
    names = list(rows[0])
    if any(list(row) != names for row in rows):
        raise ValueError("every row of one insert must give the same columns, in one order")
    # Python-side defaults of the columns not given are filled in here: left to SQLAlchemy,
    # they would become named parameters that clash when two inserts share one statement.
    defaults = {
        c.name: c.default
        for c in target.columns
        if c.name not in names and c.default is not None and not c.default.is_sequence
    }
    columns = [target.c[name] for name in [*names, *defaults]]
    payload = json.dumps(
        [
            {
                c.name: _jsonable(
                    c.type,
                    row[c.name] if c.name in row else _default_value(defaults[c.name]),
                )
                for c in columns
            }
            for row in rows
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    source = (
        func.json_to_recordset(cast(bindparam(None, payload, type_=Text), JSON))
        .table_valued(*(column(c.name, c.type) for c in columns))
        .render_derived(name="r", with_types=True)
    )
    given = [c.name for c in columns]
    stmt: Insert = make(target).from_select(given, select(*(source.c[n] for n in given)))
    return stmt


def _default_value(default: Any) -> Any:
    # A callable default (utcnow, dict) is wrapped by SQLAlchemy to take an execution context.
    if default.is_clause_element:
        raise ValueError(f"a SQL default cannot travel in the rows' JSON: {default.arg}")
    return default.arg(None) if default.is_callable else default.arg


def _jsonable(type_: Any, value: Any) -> Any:
    """A column's value as json_to_recordset reads it back into the column's type (a None is
    SQL NULL, also in a JSON column, where SQLAlchemy's own insert would store JSON null: both
    read back as None)."""
    if value is None:
        return None
    if isinstance(type_, TypeDecorator):
        value = type_.process_bind_param(value, _PG_DIALECT)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


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
