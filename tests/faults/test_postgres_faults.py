"""PostgreSQL drops the worker's connections, or refuses new ones for a few seconds, while an
activity is mid-send (the request to an admin, the answer to the customer).

The fake Twilio holds the send; when it arrives the test, from an admin connection to the
``postgres`` database, terminates every backend of the test database (``pg_terminate_backend``)
and, for an outage, first sets ``ALLOW_CONNECTIONS false`` on that one database (the server is
shared with other sessions and keeps running). The send is then accepted while the worker
cannot write it down: the retry must find it (``find_accepted``), not send it twice.

On SQLite (``NOTIFYFLOW_TEST_SQLITE=1``, or no PostgreSQL) the same scenarios hold the database
file's write lock from another connection instead, and the notification must still end
delivered with one message.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from tests.faults.harness import (
    Stack,
    drop_connections,
    ledger_row,
    scenario,
    set_connections_allowed,
    until,
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


async def _break_database(stack: Stack, pg_admin: tuple[str, str], outage: bool) -> int:
    admin_url, database = pg_admin
    if admin_url == "sqlite":
        await asyncio.to_thread(_lock_sqlite, database, OUTAGE if outage else HOLD)
        return 0
    if not outage:
        return await drop_connections(admin_url, database)
    await set_connections_allowed(admin_url, database, False)
    try:
        dropped = await drop_connections(admin_url, database)
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
        broke_at = time.monotonic()
        dropped = await _break_database(stack, pg_admin, outage)
        on_postgres = pg_admin[0] != "sqlite"
        if on_postgres:
            assert dropped >= 1  # the worker's pooled connections, at least
        if during == "request":
            await stack.wait_waiting(public)
            await stack.answer(public, merchant.admin_ids[0], ANSWER)
        outcome = await stack.outcome(public)
        assert outcome.status.value == "delivered"
        await case.judge(stack, {public: "delivered"}, [merchant])
    row = await ledger_row(stack, public, kind, phone)
    assert row.status == "sent"
    assert row.provider_message_id in {m["sid"] for m in stack.twilio.accepted(to=phone)}
    if outage and on_postgres:
        # The send went through while nothing could be written: found, not sent again.
        assert row.attempts == 1 and stack.twilio.listed(phone) >= 1
        assert time.monotonic() - broke_at >= OUTAGE
