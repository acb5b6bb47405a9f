"""Schemathesis against the API's own OpenAPI, in-process through ASGI, with the real database
and the real Temporal dev server (and a worker) behind the app.

Every operation of ``/openapi.json`` gets positive and negative cases, generated at random and
again with real ids in the path (a merchant, a conversation, an open notification), so the
cases reach rows and workflows rather than only 404s. Each response must:

- never be a 5xx (``not_a_server_error``);
- have a status code the operation declares itself — not merely the ``default`` response every
  operation has — apart from the few any route can give (below);
- match the declared content type and response schema (``content_type_conformance``,
  ``response_schema_conformance``);
- when it is an error, be exactly the envelope ``{"error": {"code", "message", "details"}}``.

The app runs on schemathesis' own event loop (its ASGI transport is synchronous), so it is built
from settings like a deployed API — its own engine, its own connection to the dev server — while
the worker runs on the test's loop. The run is bounded (``EXAMPLES`` per strategy, derandomized
so CI is reproducible; ``NOTIFYFLOW_SCHEMATHESIS_EXAMPLES`` and
``NOTIFYFLOW_SCHEMATHESIS_RANDOM=1`` explore further) and its tally is printed in the terminal
summary.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import checks as st_checks
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.python import asgi as st_asgi
from temporalio.testing import WorkflowEnvironment

from notifyflow import starter
from notifyflow.api.app import create_app
from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for

# Per operation: 15 in `make test` (its slowest test at 30), 60 in `make test-full`.
EXAMPLES = int(os.environ.get("NOTIFYFLOW_SCHEMATHESIS_EXAMPLES", "15"))
RANDOM = os.environ.get("NOTIFYFLOW_SCHEMATHESIS_RANDOM", "") not in ("", "0")

# Statuses any operation can answer without declaring them: a body over the size limit, an
# unreadable Content-Length, and the database being unreachable.
ANY_ROUTE = frozenset({413})
ENVELOPE_KEYS = {"code", "message", "details"}


@dataclass
class Tally:
    """What the run did, for the terminal summary."""

    cases: int = 0
    server_errors: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    no_negative: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, label: str, status: int) -> None:
        with self.lock:
            self.cases += 1
            self.by_operation[label] += 1
            self.statuses[status] += 1
            if status >= 500:
                self.server_errors += 1

    def lines(self) -> list[str]:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return [
            f"schemathesis: {self.cases} cases over {len(self.by_operation)} operations in "
            f"{self.seconds:.1f} s, {self.server_errors} with a 5xx",
            f"schemathesis: statuses {statuses}",
            f"schemathesis: no negative case possible for {', '.join(sorted(self.no_negative))}",
        ]


class _Summary:
    """A pytest plugin registered by the test: prints the tally after the run."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for tally in self.tallies:
            terminalreporter.write_sep("-", "schemathesis")
            for line in tally.lines():
                terminalreporter.write_line(line)


def _summary(config: pytest.Config) -> _Summary:
    plugin = config.pluginmanager.get_plugin("notifyflow-schemathesis-summary")
    if plugin is None:
        plugin = _Summary()
        config.pluginmanager.register(plugin, "notifyflow-schemathesis-summary")
    assert isinstance(plugin, _Summary)
    return plugin


# ---- checks ---------------------------------------------------------------------------------


def declared_status_code(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """Schemathesis' ``status_code_conformance`` is satisfied by any ``default`` response, which
    every operation here has (the error envelope); this one wants the status itself declared."""
    declared = {code for code in case.operation.responses.status_codes if code != "default"}
    status = response.status_code
    if str(status) not in declared and status not in ANY_ROUTE:
        raise AssertionError(
            f"{case.operation.label} answered {status}, which it does not declare "
            f"(declared: {', '.join(sorted(declared))})"
        )


def error_envelope(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """Every 4xx/5xx is ``{"error": {"code": str, "message": str, "details": …}}``."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"{case.operation.label} answered {response.status_code} without a JSON body"
        ) from None
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == ENVELOPE_KEYS, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in response.text


CHECKS: list[Callable[..., Any]] = [
    st_checks.not_a_server_error,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
    declared_status_code,
    error_envelope,
]


# ---- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownIds:
    merchant_id: int
    conversation_id: int
    notification_id: str

    def for_path(self, path: str) -> dict[str, Any]:
        """Real values for the path's parameters that name existing rows."""
        values = {
            "merchant_id": self.merchant_id,
            "conversation_id": self.conversation_id,
            "notification_id": self.notification_id,
        }
        names = re.findall(r"\{(\w+)\}", path)
        return {name: values[name] for name in names if name in values}


def _strategies(operation: Any, known: KnownIds) -> Iterator[tuple[str, Any]]:
    fixed = known.for_path(operation.path)
    if operation.path.endswith("/events"):
        # A live stream of an open notification ends only at its terminal state; with real
        # ids it is driven by tests/e2e/test_events.py instead. Made-up ids still run (4xx).
        fixed = {}
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        yield mode.value, operation.as_strategy(generation_mode=mode)
        if fixed:
            yield (
                f"{mode.value}, real ids",
                operation.as_strategy(generation_mode=mode, path_parameters=fixed),
            )


def _run(label: str, strategy: Any, tally: Tally) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @hypothesis.given(case=strategy)
    def check(case: Case) -> None:
        response = case.call()
        tally.record(label, response.status_code)
        case.validate_response(response, checks=CHECKS)

    check()


def run_schemathesis(app: Any, known: KnownIds, tally: Tally) -> None:
    """Synchronous (schemathesis' ASGI transport runs the app on its own event loop thread)."""
    started = time.monotonic()
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), f"the OpenAPI is invalid: {result.err()}"
            operations.append(result.ok())
        assert len(operations) >= 15, [op.label for op in operations]
        failures: list[str] = []
        for operation in operations:
            for mode, strategy in _strategies(operation, known):
                try:
                    _run(operation.label, strategy, tally)
                except hypothesis.errors.Unsatisfiable:
                    # Nothing to make invalid: no parameters, no body (/healthz, /metrics).
                    if not mode.startswith("negative"):
                        raise
                    tally.no_negative.add(operation.label)
                except (Exception, BaseExceptionGroup) as exc:  # every operation runs
                    failures.append(f"{operation.label} ({mode}): {exc}")
        assert not failures, "\n\n".join(failures)
        missing = {op.label for op in operations} - set(tally.by_operation)
        assert not missing, f"operations never called: {missing}"
    finally:
        tally.seconds = time.monotonic() - started
        # Ends the app's lifespan: its engine is disposed, its Temporal connection dropped.
        st_asgi.shutdown_lifespans()


async def test_schemathesis_finds_no_server_error_and_the_spec_holds(
    request: pytest.FixtureRequest,
    dev_env: WorkflowEnvironment,
    database_url: str,
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory: Callable[..., Any],
) -> None:
    shop: Shop = await shop_factory()
    timers = settings_for(task_queue)
    settings = Settings(
        DATABASE_URL=database_url,
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=task_queue,
        NOTIFYFLOW_REMIND_AFTER=timers.remind_after,
        NOTIFYFLOW_ESCALATE_AFTER=timers.escalate_after,
        NOTIFYFLOW_AUTO_CLOSE_AFTER=timers.auto_close_after,
    )
    app = create_app(settings)
    tally = Tally()
    _summary(request.config).tallies.append(tally)

    async with running_worker(dev_env.client, db, task_queue, channel):
        view = await starter.request_notification(
            dev_env.client,
            db,
            type="user_question_request",
            conversation_id=shop.conversation_id,
            context={"question": "Is the blue one in stock?"},
            settings=timers,
        )
        known = KnownIds(shop.merchant_id, shop.conversation_id, view.notification_id)
        # The worker stays on this loop while schemathesis drives the app from a thread.
        await asyncio.to_thread(run_schemathesis, app, known, tally)

    assert tally.cases > 0 and tally.server_errors == 0, tally.lines()
