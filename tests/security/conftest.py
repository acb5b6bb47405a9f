"""A live stack for security and bad-input tests: the real app over the real database, a real
worker on the dev server whose WhatsApp channel is the real SDK on the strict fake Twilio.
Prints a bad-input tally at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from tests.api.conftest import client_for
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker, settings_for


@dataclass
class Tally:
    tried: int = 0
    server_errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, status: int) -> None:
        self.tried += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if status >= 500:
            self.server_errors += 1


TALLY = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.tried:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(TALLY.by_kind.items()))
        terminalreporter.write_line(
            f"bad inputs tried {TALLY.tried}, 5xx {TALLY.server_errors} ({kinds})"
        )


@dataclass
class LiveStack:
    http: httpx.AsyncClient
    channel: FakeTwilioChannel
    task_queue: str
    db: SessionFactory
    client: Client


@pytest_asyncio.fixture
async def live(dev_env, db, task_queue, channel) -> AsyncIterator[LiveStack]:  # type: ignore[no-untyped-def]
    settings = settings_for(task_queue)
    app = create_app(settings, temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel):
        async with client_for(app) as http:
            yield LiveStack(http, channel, task_queue, db, dev_env.client)
