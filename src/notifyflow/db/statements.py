"""Statements that write many rows in one round trip, the same on PostgreSQL and SQLite.

The lifecycle's hot paths claim and record several sends at once (a fan-out to every admin):
one statement for all of them instead of one per person keeps the SQL per notification flat as
a team grows (issue 17).

On PostgreSQL each statement of the hot path is built once per process, its values bound
parameters (:class:`Bound`): building a construct and its cache key per call cost more of the
worker's CPU than executing it."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
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
    select,
    update,
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


# Bound parameters are named ``<name>__<column>``: SQLAlchemy adds an execution parameter whose
# name is a column of the table an UPDATE writes to that UPDATE's SET clause, and no column
# name has a double underscore.


@dataclass(frozen=True)
class Bound:
    """A statement and the values of its bound parameters. ``static``: the statement is built
    once and shared (its values are only in ``params``), so statements combining it can be
    built once too (:class:`Writes`)."""

    statement: Any
    params: Mapping[str, Any] = dataclass_field(default_factory=dict)
    static: bool = False


def bound(stmt: Any) -> Bound:
    """A statement with its values inside (built per call) as a :class:`Bound`."""
    return stmt if isinstance(stmt, Bound) else Bound(stmt)


async def execute(session: AsyncSession, stmt: Any) -> Result[Any]:
    """Execute a statement or a :class:`Bound`."""
    b = bound(stmt)
    result: Result[Any] = await session.execute(b.statement, dict(b.params) or None)
    return result


def insert_rows(
    dialect: str,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    unique: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> Bound:
    """An INSERT of several rows (every row with the same keys) in one statement; with
    ``unique``, ``ON CONFLICT (unique) DO NOTHING`` (a row whose key exists is left as it is;
    with ``returning`` — column names — only the rows written come back).

    On PostgreSQL the rows travel as one JSON parameter, ``INSERT … SELECT … FROM
    json_to_recordset(:<table>__rows) AS r(col type, …)``: the statement depends only on the
    table and the columns, so it is built once (a multi-row ``VALUES (…), (…)`` changes with
    every row count, and SQLAlchemy keeps no cache key for it). On SQLite (no statement of
    these rides in a CTE there), ``VALUES (…), (…)`` built per call."""
    target: Table = getattr(table, "__table__", table)
    if not rows:
        raise ValueError("an insert of rows needs at least one row")
    names = list(rows[0])
    if any(list(row) != names for row in rows):
        raise ValueError("every row of one insert must give the same columns, in one order")
    if dialect == "postgresql":
        stmt, columns, defaults = _recordset_insert(
            target, tuple(names), tuple(unique), tuple(returning)
        )
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
        return Bound(stmt, {f"{target.name}__rows": payload}, static=True)
    if dialect == "sqlite":
        made: Any = sqlite.insert(target).values(list(rows))
        if unique:
            made = made.on_conflict_do_nothing(index_elements=list(unique))
        if returning:
            made = made.returning(*(target.c[n] for n in returning))
        return Bound(made)
    raise NotImplementedError(f"{dialect} is not supported")


@functools.cache
def _recordset_insert(
    target: Table, names: tuple[str, ...], unique: tuple[str, ...], returning: tuple[str, ...]
) -> tuple[Insert, list[Any], dict[str, Any]]:
    # Python-side defaults of the columns not given are filled in per row: left to
    # SQLAlchemy, they would become named parameters that clash when two inserts share one
    # statement.
    defaults = {
        c.name: c.default
        for c in target.columns
        if c.name not in names and c.default is not None and not c.default.is_sequence
    }
    columns = [target.c[name] for name in [*names, *defaults]]
    source = (
        func.json_to_recordset(cast(bindparam(f"{target.name}__rows", type_=Text), JSON))
        .table_valued(*(column(c.name, c.type) for c in columns))
        .render_derived(name="r", with_types=True)
    )
    given = [c.name for c in columns]
    stmt: Any = postgresql.insert(target).from_select(given, select(*(source.c[n] for n in given)))
    if unique:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(unique))
    if returning:
        stmt = stmt.returning(*(target.c[n] for n in returning))
    return stmt, columns, defaults


def update_rows(
    dialect: str,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
    same: Mapping[str, Any],
    name: str,
) -> Bound:
    """One UPDATE for several rows: the row whose ``key`` column equals a row's ``key`` gets
    that row's other values (every row of ``rows`` gives the same columns), and all of them get
    the values of ``same``.

    On PostgreSQL ``UPDATE … FROM json_to_recordset(:<name>__rows)``, built once for the
    table and the column names, ``same`` bound as ``<name>__<column>``; on SQLite (no DML in
    CTEs there) ``CASE key WHEN … THEN …`` per column, built per call."""
    target: Table = getattr(table, "__table__", table)
    if not rows:
        raise ValueError("an update of rows needs at least one row")
    varying = [n for n in rows[0] if n != key]
    if any(sorted(row) != sorted([key, *varying]) for row in rows):
        raise ValueError("every row of one update must give the same columns")
    if dialect == "postgresql":
        stmt = _recordset_update(target, key, tuple(varying), tuple(same), name)
        params: dict[str, Any] = {
            f"{name}__rows": json.dumps(
                [{n: _jsonable(target.c[n].type, row[n]) for n in [key, *varying]} for row in rows],
                ensure_ascii=False,
                separators=(",", ":"),
            )
        }
        params.update({f"{name}__{n}": v for n, v in same.items()})
        return Bound(stmt, params, static=True)
    if dialect == "sqlite":
        keys = [row[key] for row in rows]
        values: dict[str, Any] = dict(same)
        for n in varying:
            values[n] = per_row(target.c[key], {row[key]: row[n] for row in rows})
        return Bound(update(target).where(target.c[key].in_(keys)).values(**values))
    raise NotImplementedError(f"{dialect} is not supported")


@functools.cache
def _recordset_update(
    target: Table, key: str, varying: tuple[str, ...], same: tuple[str, ...], name: str
) -> Any:
    source = (
        func.json_to_recordset(cast(bindparam(f"{name}__rows", type_=Text), JSON))
        .table_valued(*(column(n, target.c[n].type) for n in [key, *varying]))
        .render_derived(name=f"{name}_r", with_types=True)
    )
    values: dict[str, Any] = {n: source.c[n] for n in varying}
    values.update({n: bindparam(f"{name}__{n}", type_=target.c[n].type) for n in same})
    return update(target).where(target.c[key] == source.c[key]).values(**values)


@functools.cache
def _static_update(target: Table, where: str, columns: tuple[str, ...], name: str) -> Any:
    return (
        update(target)
        .where(target.c[where] == bindparam(f"{name}__{where}", type_=target.c[where].type))
        .values({c: bindparam(f"{name}__{c}", type_=target.c[c].type) for c in columns})
    )


def bind_update(
    table: Any,
    *,
    where: str,
    key: Any,
    values: Mapping[str, Any],
    name: str,
    returning: Sequence[str] = (),
) -> Bound:
    """``UPDATE table SET col = :<name>__<col>, … WHERE <where> = :<name>__<where>`` (built
    once per table, columns and name) with ``values`` (its keys are the columns set) for the
    row whose ``where`` column is ``key``."""
    target: Table = getattr(table, "__table__", table)
    stmt = _static_update(target, where, tuple(values), name)
    if returning:
        stmt = _returning(stmt, tuple(returning))
    params = {f"{name}__{c}": v for c, v in values.items()}
    params[f"{name}__{where}"] = key
    return Bound(stmt, params, static=True)


@functools.cache
def _returning(stmt: Any, names: tuple[str, ...]) -> Any:
    return stmt.returning(*(stmt.table.c[n] for n in names))


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
    When every part is a static :class:`Bound`, the combined statement is built once per
    combination and kept. On SQLite, which has no DML in CTEs, each is its own statement in
    the same transaction. Values that SQLAlchemy would compute at execution (``onupdate``)
    must be given: a CTE cannot take them."""

    def __init__(self) -> None:
        self._quiet: list[Bound] = []

    def add(self, stmt: Any) -> None:
        self._quiet.append(bound(stmt))

    def __bool__(self) -> bool:
        return bool(self._quiet)

    async def run(self, session: AsyncSession, main: Any | None = None) -> Result[Any] | None:
        """Execute every statement added, and ``main`` (returned: its result)."""
        quiet, self._quiet = self._quiet, []
        parts = [*quiet, bound(main)] if main is not None else quiet
        # Checked on every dialect: a clash that only PostgreSQL's one statement would meet
        # must fail the tests on SQLite too.
        params = _merged_params(parts)
        if dialect_name(session) == "postgresql" and quiet:
            return await execute(session, _combined(parts, params))
        for stmt in quiet:
            await execute(session, stmt)
        if main is None:
            return None
        return await execute(session, main)


def _merged_params(parts: list[Bound]) -> dict[str, Any]:
    """Every part's values; two parts binding one name would share it in one statement."""
    params: dict[str, Any] = {}
    for part in parts:
        for name, value in part.params.items():
            if name in params:
                raise ValueError(f"two statements of one write bind {name!r}")
            params[name] = value
    return params


def _combined(parts: list[Bound], params: dict[str, Any] | None = None) -> Bound:
    """The last part with the others as its CTEs ``w0``, ``w1``, …, and every part's values."""
    if params is None:
        params = _merged_params(parts)
    if all(p.static for p in parts):
        stmt = _combine_static(tuple(p.statement for p in parts))
        return Bound(stmt, params, static=True)
    return Bound(_combine(tuple(p.statement for p in parts)), params)


def _combine(statements: tuple[Any, ...]) -> Any:
    *quiet, main = statements
    if not quiet:
        return main
    return main.add_cte(*(s.cte(f"w{i}") for i, s in enumerate(quiet)))


# Static statements live for the process, so a combination of them can be kept by their
# identities; the few combinations a worker makes (one per step shape) stay in this cache.
_combine_static = functools.lru_cache(maxsize=256)(_combine)
