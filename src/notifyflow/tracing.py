"""OpenTelemetry tracing: one trace from ``POST /v1/notifications`` through the workflow and its
activities to the Twilio and OpenAI calls.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set,
and then at no cost: nothing below is imported, no interceptor is installed, no library is
instrumented, and the OpenTelemetry API stays its no-op self. When set, every process (API,
worker, CLI) installs the SDK's tracer provider with a batching OTLP/HTTP exporter configured by
the standard ``OTEL_*`` variables (endpoint, headers, timeout, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``; ``OTEL_SDK_DISABLED=true`` turns it off),
and instruments:

- the Temporal client and its workers (``temporalio.contrib.opentelemetry.TracingInterceptor``,
  through :func:`notifyflow.worker.connect`): the trace context travels in workflow and
  activity headers, so the workflow's and activities' spans join the request's trace;
- the FastAPI app (a server span per request, named by its route template);
- httpx (the OpenAI SDK, Instagram) and aiohttp (the Twilio SDK) client calls;
- SQLAlchemy (a span per statement).

Log records carry ``trace_id`` and ``span_id`` whenever a span is current
(:class:`notifyflow.logs.ContextFilter`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace.export import SpanExporter
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_lock = threading.Lock()
_installed = False


def tracing_configured(env: dict[str, str] | None = None) -> bool:
    """Whether the OTel variables ask for traces: an OTLP endpoint, and the SDK not disabled."""
    env = dict(os.environ) if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


def enabled() -> bool:
    """Whether this process traces (set up by :func:`setup_tracing`)."""
    return _installed


def setup_tracing(
    service_name: str = "notifyflow", *, exporter: SpanExporter | None = None
) -> bool:
    """Install tracing for this process once: from the OTel variables, or with ``exporter``
    (tests: an in-memory exporter, spans exported as they end). Returns whether tracing is on.
    """
    global _installed
    if exporter is None and not tracing_configured():
        return False
    with _lock:
        if _installed:
            return True
        from opentelemetry import trace
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create(
            {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name}
        )
        provider = TracerProvider(resource=resource)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        _instrument_libraries()
        _installed = True
    log.info("tracing on: spans exported by %s", "OTLP" if exporter is None else "a test exporter")
    return True


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()
    # SQLAlchemy: per engine, as each is created (instrument_engine).


def instrument_engine(engine: AsyncEngine) -> None:
    """A span per SQL statement of ``engine``, when tracing is on
    (:func:`notifyflow.db.session.create_engine` calls it for every engine)."""
    if not _installed:
        return
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # The instrumentor's own per-engine tracer: SQLAlchemyInstrumentor().instrument() runs
    # once per process, and our engines come from create_async_engine imported before it.
    usage = metrics.get_meter("notifyflow.db").create_up_down_counter(
        "db.client.connections.usage", unit="connections"
    )
    EngineTracer(  # type: ignore[no-untyped-call]  # the instrumentation ships no types
        trace.get_tracer("notifyflow.db"), engine.sync_engine, usage
    )


def teardown_for_tests() -> None:
    """Undo :func:`setup_tracing`'s instrumentation (the tracer provider stays: OpenTelemetry
    sets it once per process), so later tests run untraced."""
    global _installed
    with _lock:
        if not _installed:
            return
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().uninstrument()
        AioHttpClientInstrumentor().uninstrument()
        _installed = False


def temporal_interceptors() -> list[Any]:
    """The client interceptors :func:`notifyflow.worker.connect` installs: the tracing one when
    tracing is on (workers built from that client inherit it), none otherwise."""
    if not _installed:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_app(app: FastAPI) -> None:
    """A server span per request, when tracing is on."""
    if not _installed:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, or None (tracing off or no span)."""
    if not _installed:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
