"""PostgreSQL drops the worker's connections, or refuses new ones for a few seconds, while an
activity is mid-send (the request to an admin, the answer to the customer).

The fake Twilio holds the send; when it arrives the test, from an admin connection to the
``postgres`` database, terminates the worker's own backends — the worker connects with
``application_name=nf-worker-<task queue>`` (tests/faults/conftest.py), so it is the product's
pooled connections that are cut, not the test's — and, for an outage, first sets
``ALLOW_CONNECTIONS false`` on that one database (the server is shared with other sessions and
keeps running). The send is then accepted while the worker cannot write it down: the retry must
find it (``find_accepted``), not send it twice. Afterwards the worker is connected again with
new backends.

On SQLite (``NOTIFYFLOW_TEST_SQLITE=1``, or no PostgreSQL) the same scenarios hold the database
file's write lock from another connection instead, and the notification must still end
delivered with one message.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.faults.harness import (
    Stack,
    backends,
    drop_connections,
    ledger_row,
    scenario,
    set_connections_allowed,
    until,
    worker_application_name,
)

ANSWER = "Yes, the blue one is back in stock."
HOLD = 1.5  # seconds the fake holds the send before accepting it
OUTAGE = 3.0  # seconds new connections are refused


def _lock_sqlite(path: str, seconds: float) -> None:
    """SQLite has no server connections to drop: its outage is another process holding the
    database file's write lock, so every writer waits (busy timeout) or fails and retries."""
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        connection.execute("COMMIT")
    finally:
        connection.close()


async def _refused(admin_url: str, database: str) -> bool:
    """Whether a new connection to ``database`` is refused right now."""
    url = make_url(admin_url).set(database=database).render_as_string(hide_password=False)
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=5):
            return False
    except psycopg.OperationalError:
        return True


async def _break_database(
    stack: Stack, pg_admin: tuple[str, str], outage: bool, application_name: str
) -> set[int]:
    """Cut the worker's connections (and refuse new ones for OUTAGE s); the pids cut."""
    admin_url, database = pg_admin
    if admin_url == "sqlite":
        await asyncio.to_thread(_lock_sqlite, database, OUTAGE if outage else HOLD)
        return set()
    if not outage:
        return await drop_connections(admin_url, database, application_name)
    await set_connections_allowed(admin_url, database, False)
    try:
        dropped = await drop_connections(admin_url, database, application_name)
        # The outage is real: nobody can connect to the database now.
        assert await _refused(admin_url, database)
        await asyncio.sleep(OUTAGE)
    finally:
        await set_connections_allowed(admin_url, database, True)
    return dropped


@pytest.mark.parametrize("outage", [False, True], ids=["connections-dropped", "unavailable"])
@pytest.mark.parametrize("during", ["request", "answer"])
async def test_database_fault_mid_send(
    make_stack, pg_admin: tuple[str, str], during: str, outage: bool
) -> None:
    stack: Stack = await make_stack()
    merchant = await stack.merchant()
    admin = merchant.phones[merchant.admin_ids[0]]
    customer = merchant.customer_phone or ""
    what = "unavailable" if outage else "connections dropped"
    on_postgres = pg_admin[0] != "sqlite"
    app = worker_application_name(stack.settings.temporal_task_queue)
    async with scenario(f"postgres {what} during {during}") as case:
        if during == "request":
            phone, kind = admin, "request"
            hold = stack.twilio.hold_next(phone, HOLD)
            public = await stack.request(merchant)
        else:
            phone, kind = customer, "answer"
            public = await stack.request(merchant)
            await stack.wait_waiting(public)
            hold = stack.twilio.hold_next(phone, HOLD)
            await stack.answer(public, merchant.admin_ids[0], ANSWER)
        await until(hold.arrived.is_set, f"the {kind} send to reach Twilio", timeout=30)
        if on_postgres:
            before = await backends(pg_admin[0], pg_admin[1], app)
            assert before, f"the worker ({app}) holds no connection to cut"
        dropped = await _break_database(stack, pg_admin, outage, app)
        if on_postgres:
            # The worker's own pooled connections were cut (the test's are not in the set).
            assert dropped and dropped <= before
        if during == "request":
            await stack.wait_waiting(public)
            await stack.answer(public, merchant.admin_ids[0], ANSWER)
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
        row = await ledger_row(stack, public, kind, phone)
        assert row.status == "sent"
        assert row.provider_message_id in {m["sid"] for m in stack.twilio.accepted(to=phone)}
        if on_postgres:
            # The product reconnected: the worker is on new backends, none of the ones cut.
            after = await backends(pg_admin[0], pg_admin[1], app)
            assert after and not after & dropped
        if outage and on_postgres:
            # The send went through while nothing could be written: found, not sent again.
            assert row.attempts == 1 and stack.twilio.listed(phone) >= 1
