"""The black-box layer's fixtures: one product stack per session on a FRESH database that only
``notifyflow db upgrade`` has touched, and the figures the tests measured (printed at the end
of the run by the root conftest, never asserted).

Database: the run's choice (tests/fixtures/database.py). On PostgreSQL a new database is
created on the same server and dropped afterwards; on SQLite a new file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.e2e.stack import E2EStack
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.twilio_server import FakeTwilio
from tests.faults.harness import faithful_responder
from tests.faults.processes import DevServer
from tests.figures import FIGURES, figure
from tests.fixtures.database import (
    create_postgres_database,
    database_choice,
    drop_postgres_database,
    postgres_server_url,
)


class Figures:
    """``figures.add("answer route wait", 0.42, "s")``: a line of the run's "figures"
    summary (tests/figures.py), named after the test; counts and words are shown as they are."""

    def __init__(self, test: str) -> None:
        self._test = test

    def add(self, what: str, value: float | int | str, unit: str = "") -> None:
        name = f"e2e {self._test}: {what}"
        if isinstance(value, float):
            figure(name, value, unit)
        else:
            FIGURES.append(f"{name}: {value}{' ' + unit if unit else ''}")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.name)


@pytest.fixture(scope="session")
def e2e_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database nobody has migrated or seeded yet."""
    if database_choice().dialect == "postgresql":
        server = postgres_server_url()
        # The run itself uses PostgreSQL, so its server answers.
        assert server is not None, "the run uses PostgreSQL but no server answers"
        name = f"notifyflow_e2e_{os.getpid()}_{secrets.token_hex(4)}"
        url = create_postgres_database(server, name)
        try:
            yield url
        finally:
            drop_postgres_database(server, name)
    else:
        path = tmp_path_factory.mktemp("e2e-db") / "notifyflow.db"
        yield f"sqlite+aiosqlite:///{path}"


@pytest_asyncio.fixture(scope="session")
async def e2e_stack(
    e2e_database_url: str,
    fake_twilio: FakeTwilio,
    fake_openai: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[E2EStack]:
    workdir = tmp_path_factory.mktemp("e2e")
    server = DevServer(workdir / "temporal")
    stack = E2EStack(workdir, server, e2e_database_url, fake_twilio, fake_openai)
    try:
        server.start()
        stack.db_upgrade()
        # Both import the whole application: start them side by side.
        stack.spawn_worker()
        stack.spawn_api()
        stack.wait_api()
        stack.wait_worker()
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture
async def stack(e2e_stack: E2EStack) -> AsyncIterator[E2EStack]:
    """The session's stack, running and thawed, the fakes reset (no faults, faithful model)
    and the provisioned templates registered with the fake Twilio."""
    e2e_stack.ensure_running()
    e2e_stack.twilio.reset()
    e2e_stack.openai.reset()
    e2e_stack.openai.set_responder(faithful_responder)
    await e2e_stack.register_templates()
    try:
        yield e2e_stack
    finally:
        e2e_stack.thaw()
        e2e_stack.twilio.clear_faults()
