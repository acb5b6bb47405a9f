"""Fault-injection fixtures: a restartable Temporal dev server with file persistence, the real
worker in a subprocess, the session's PostgreSQL, a fake Twilio that can hold sends and the
fake OpenAI; plus the summary line printed at the end of the run.

``NOTIFYFLOW_FAULT_TRIALS`` sets how many times each SIGKILL scenario runs (default 1;
``make test-full`` sets 10).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from notifyflow.worker import connect
from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeOpenAI
from tests.fakes.twilio_server import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
from tests.faults.harness import (
    PRODUCT_ENV,
    TALLY,
    FaultTwilio,
    Stack,
    faithful_responder,
    register_templates,
    worker_application_name,
)
from tests.faults.processes import DevServer, WorkerProcess
from tests.fixtures.database import MerchantFactory

# Client-side timeouts in the worker, so an injected timeout costs seconds, not 15-30 s.
TWILIO_TIMEOUT = "3"
OPENAI_TIMEOUT = "3"


@pytest.fixture(scope="session")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fault_twilio_server() -> Iterator[FaultTwilio]:
    server = FaultTwilio(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def ftwilio(fault_twilio_server: FaultTwilio, db: SessionFactory) -> FaultTwilio:
    fault_twilio_server.reset()
    await register_templates(db, fault_twilio_server)
    return fault_twilio_server


@pytest.fixture
def fopenai(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai.reset()
    fake_openai.set_responder(faithful_responder)
    yield fake_openai
    fake_openai.reset()


@pytest.fixture
def pg_admin(database_url: str) -> tuple[str, str]:
    """(libpq URL of the server's ``postgres`` database, the test database's name); on SQLite
    ("sqlite", the database file), whose faults are a lock held on the file instead."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return "sqlite", str(url.database)
    admin = url.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), str(url.database)


def worker_env(
    server: DevServer,
    database_url: str,
    twilio: FaultTwilio,
    openai: FakeOpenAI,
    task_queue: str,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in PRODUCT_ENV}
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        # The worker's own connections carry its name, so a test can cut exactly those.
        url = url.update_query_dict({"application_name": worker_application_name(task_queue)})
    env.update(
        DATABASE_URL=url.render_as_string(hide_password=False),
        TEMPORAL_ADDRESS=server.address,
        TEMPORAL_NAMESPACE="default",
        TEMPORAL_TASK_QUEUE=task_queue,
        NOTIFYFLOW_CHANNEL="twilio",
        TWILIO_ACCOUNT_SID=twilio.account_sid,
        TWILIO_AUTH_TOKEN=twilio.auth_token,
        TWILIO_API_BASE_URL=twilio.base_url,
        NOTIFYFLOW_AI="openai",
        OPENAI_API_KEY=openai.api_key or FAKE_OPENAI_KEY,
        OPENAI_BASE_URL=openai.base_url,
        NOTIFYFLOW_PUBLIC_URL="http://127.0.0.1:8000",
        FAULT_TWILIO_TIMEOUT=TWILIO_TIMEOUT,
        FAULT_OPENAI_TIMEOUT=OPENAI_TIMEOUT,
        NOTIFYFLOW_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def starter_settings(
    server: DevServer,
    task_queue: str,
    remind_after: timedelta = timedelta(hours=1),
    escalate_after: timedelta = timedelta(hours=2),
    auto_close_after: timedelta = timedelta(hours=24),
) -> Settings:
    return Settings(
        TEMPORAL_ADDRESS=server.address,
        TEMPORAL_TASK_QUEUE=task_queue,
        NOTIFYFLOW_REMIND_AFTER=remind_after,
        NOTIFYFLOW_ESCALATE_AFTER=escalate_after,
        NOTIFYFLOW_AUTO_CLOSE_AFTER=auto_close_after,
    )


@pytest.fixture(scope="session")
def shared_worker(
    fault_server: DevServer,
    database_url: str,
    fault_twilio_server: FaultTwilio,
    fake_openai: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """One worker for the tests that do not kill it (starting one costs seconds)."""
    env = worker_env(fault_server, database_url, fault_twilio_server, fake_openai, "faults-shared")
    worker = WorkerProcess(env, tmp_path_factory.mktemp("shared-worker"), "worker")
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest_asyncio.fixture
async def make_stack(
    fault_server: DevServer,
    database_url: str,
    db: SessionFactory,
    ftwilio: FaultTwilio,
    fopenai: FakeOpenAI,
    shared_worker: WorkerProcess,
    tmp_path: Path,
) -> AsyncIterator[object]:
    """``await make_stack(...)``: a Stack on the shared worker, or with ``own_worker=True``
    (implied by ``activity_timeout``) on a worker of its own with a fresh task queue, which
    the test may kill and restart. Timers (``remind_after=…``) are the starter's settings."""
    own: list[WorkerProcess] = []

    async def make(
        *,
        own_worker: bool = False,
        activity_timeout: float | None = None,
        **timers: timedelta,
    ) -> Stack:
        if own_worker or activity_timeout:
            task_queue = f"faults-{uuid.uuid4().hex[:10]}"
            extra = {"FAULT_ACTIVITY_TIMEOUT": str(activity_timeout)} if activity_timeout else {}
            env = worker_env(fault_server, database_url, ftwilio, fopenai, task_queue, **extra)
            worker = WorkerProcess(env, tmp_path, f"worker-{len(own)}")
            worker.start()
            own.append(worker)
        else:
            worker = shared_worker
            task_queue = str(worker.env["TEMPORAL_TASK_QUEUE"])
            # A test that restarted the server may have left it to reconnect: make sure.
            worker.start()
        settings = starter_settings(fault_server, task_queue, **timers)
        return Stack(
            server=fault_server,
            client=await connect(settings),
            db=db,
            twilio=ftwilio,
            openai=fopenai,
            settings=settings,
            worker=worker,
            merchants=MerchantFactory(db),
        )

    yield make
    for worker in own:
        # Every notification of the test has ended: nothing is left to shut down gracefully.
        worker.kill()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.injected:
        return
    terminalreporter.section("fault injection")
    for name, (injected, survived, lost, dups, failed, errors) in sorted(TALLY.by_scenario.items()):
        extra = f", failed {failed}, errors {errors}" if failed or errors else ""
        terminalreporter.write_line(
            f"  {name}: injected {injected}, survived {survived}, lost {lost}, "
            f"duplicates {dups}{extra}"
        )
    terminalreporter.write_line(TALLY.line())
    if TALLY.failed or TALLY.errors:
        terminalreporter.write_line(TALLY.problems_line())
