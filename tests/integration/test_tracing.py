"""Tracing (issue 18): one notification is one trace — the API's server span, the Temporal
client's StartWorkflow, the workflow's RunWorkflow, its activities, their SQL statements and
the Twilio calls — asserted by name and parentage with an in-memory exporter; logs carry the
span's ids; and with no OTLP endpoint nothing is set up at all."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from notifyflow import tracing
from notifyflow.api.app import create_app
from notifyflow.config import Settings
from notifyflow.db.session import create_engine, session_factory
from notifyflow.logs import ContextFilter, JsonFormatter
from notifyflow.worker import connect
from tests.api.conftest import client_for
from tests.api.test_notification_routes import ask, until_sent, until_status
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for


def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    assert not tracing.tracing_configured({})
    assert not tracing.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert tracing.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318"})
    assert not tracing.tracing_configured(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
    # In a process of its own: another test of this run may have set tracing up in this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = (
        "from notifyflow import tracing\n"
        "assert not tracing.enabled()\n"
        "assert tracing.temporal_interceptors() == [] and tracing.current_ids() is None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest_asyncio.fixture
async def traced(
    database_url: str,
) -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing(exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.teardown_for_tests()


def _tree(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans if s.context is not None}


async def test_one_notification_is_one_trace(
    traced: InMemorySpanExporter,
    dev_env,  # type: ignore[no-untyped-def]
    database_url: str,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory: Callable[..., Any],
) -> None:
    address = dev_env.client.service_client.config.target_host
    settings: Settings = settings_for(task_queue).model_copy(update={"temporal_address": address})
    client = await connect(settings)
    # A fresh engine, created with tracing on, for the API and the worker alike.
    engine = create_engine(database_url)
    db = session_factory(engine)
    shop: Shop = await shop_factory()
    try:
        app = create_app(settings, temporal_client=client, session_factory=db)
        async with running_worker(client, db, task_queue, channel), client_for(app) as api:
            public = await ask(api, shop)
            await until_sent(api, public)
            traced.clear()
            public = await ask(api, shop, context={"question": "Do you ship to Spain?"})
            await until_sent(api, public)
            accepted = await api.post(
                f"/v1/notifications/{public}/answer",
                json={"answered_by": shop.admins[0].id, "answer": {"answer": "Yes, in 3 days."}},
            )
            assert accepted.status_code == 200, accepted.text
            await until_status(api, public, {"delivered"})
    finally:
        await engine.dispose()

    spans = list(traced.get_finished_spans())
    by_id = _tree(spans)

    def parent(span: ReadableSpan) -> str | None:
        found = by_id.get(span.parent.span_id) if span.parent else None
        return found.name if found else None

    [request] = [s for s in spans if s.name == "POST /v1/notifications" and s.parent is None]
    in_trace = [s for s in spans if s.context.trace_id == request.context.trace_id]
    temporal = {
        (s.name, parent(s))
        for s in in_trace
        if s.name.split(":")[0]
        in {"StartWorkflow", "RunWorkflow", "StartActivity", "RunActivity", "HandleUpdate"}
    }
    # TracingInterceptor's tree: the workflow's spans hang under the client's StartWorkflow,
    # each activity's run under its start; the answer's update, taken by the same workflow,
    # and the delivery that follows it are in the request's trace too.
    start = "StartWorkflow:NotificationWorkflow"
    assert {
        (start, "POST /v1/notifications"),
        ("RunWorkflow:NotificationWorkflow", start),
        ("StartActivity:open_notification", start),
        ("RunActivity:open_notification", "StartActivity:open_notification"),
        ("HandleUpdate:submit_answer", start),
        ("StartActivity:deliver_answer", start),
        ("RunActivity:deliver_answer", "StartActivity:deliver_answer"),
    } <= temporal, sorted(temporal, key=str)
    for name, up in temporal:
        if name.startswith("RunActivity:"):
            assert up == name.replace("Run", "Start", 1)

    def url(span: ReadableSpan) -> str:
        attributes = span.attributes or {}
        return str(attributes.get("url.full") or attributes.get("http.url") or "")

    # The Twilio calls (the SDK's aiohttp) of both activities: the requests to the admins
    # and the answer to the customer.
    twilio = {parent(s) for s in in_trace if url(s).endswith("/Messages.json")}
    assert {"RunActivity:open_notification", "RunActivity:deliver_answer"} <= twilio, twilio
    sql = {parent(s) for s in in_trace if (s.attributes or {}).get("db.system")}
    assert {"POST /v1/notifications", "RunActivity:open_notification"} <= sql, sql

    # The answer request is a trace of its own: its update call, from the API.
    [answer] = [s for s in spans if s.name == "POST /v1/notifications/{notification_id}/answer"]
    answer_trace = [s for s in spans if s.context.trace_id == answer.context.trace_id]
    assert ("StartWorkflowUpdate:submit_answer", answer.name) in {
        (s.name, parent(s)) for s in answer_trace
    }


def test_log_records_carry_the_span_ids(traced: InMemorySpanExporter) -> None:
    from opentelemetry import trace

    record = logging.LogRecord("notifyflow.test", logging.INFO, __file__, 1, "hello", None, None)
    with trace.get_tracer(__name__).start_as_current_span("work") as span:
        ContextFilter().filter(record)
        context = span.get_span_context()
    line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    outside = logging.LogRecord("notifyflow.test", logging.INFO, __file__, 1, "hi", None, None)
    ContextFilter().filter(outside)
    assert not hasattr(outside, "trace_id")


def test_off_costs_nothing() -> None:
    """Without an endpoint the API, worker connect and engines import no SDK and no
    instrumentation (a fresh interpreter, so this process's tests cannot interfere)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from notifyflow.api.app import create_app\n"
        "from notifyflow.config import Settings\n"
        "from notifyflow.db.session import create_engine\n"
        "import notifyflow.worker, notifyflow.logs\n"
        "create_app(Settings(DATABASE_URL='sqlite+aiosqlite:///:memory:'))\n"
        "create_engine('sqlite+aiosqlite:///:memory:')\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter'))]\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
