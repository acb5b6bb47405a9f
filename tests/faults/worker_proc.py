"""The real worker in a subprocess, so the fault tests can SIGKILL it.

``python -m tests.faults.worker_proc`` with the product's environment variables
(``DATABASE_URL``, ``TEMPORAL_ADDRESS``, ``TEMPORAL_TASK_QUEUE``, ``TWILIO_*``, ``OPENAI_*``,
``NOTIFYFLOW_AI``, ``NOTIFYFLOW_CHANNEL``) builds what ``notifyflow worker`` builds:
``connect``, ``build_ai``/``build_channel``, ``build_activities``, ``build_worker``. Test-only
knobs, all optional:

- ``FAULT_WORKER_READY_FILE``: written once the worker polls (the test waits for it);
- ``FAULT_TWILIO_TIMEOUT`` / ``FAULT_OPENAI_TIMEOUT``: the HTTP timeout of the real
  ``TwilioChannel`` / ``OpenAIProvider`` (their constructors' own argument; the defaults,
  15 s and 30 s, would make every injected timeout cost that long);
- ``FAULT_ACTIVITY_TIMEOUT``: seconds of ``start_to_close`` for the lifecycle activities
  instead of policies.py's 5 minutes, set by a workflow interceptor on the real worker. In
  production a SIGKILLed worker is noticed by the heartbeat timeout (30 s; the activities
  heartbeat every 5 s); a start-to-close of a few seconds notices it sooner, so that the kill
  loop's trials take seconds. It replaces production's detection: the kill trial with
  production timeouts (``test_worker_killed_with_production_timeouts``) sets none of this.
  (Patching ``policies`` in this process would not do: the workflow sandbox imports its own
  copy of the module.) The same switch sets the worker's
  ``sticky_queue_schedule_to_start_timeout`` to 1 s (SDK default 10 s): the next workflow task
  of a workflow cached by the dead worker waits that long before the server gives it to
  another worker.

The worker stops on SIGTERM/SIGINT, and on its own when the test process that started it dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

import notifyflow.worker as product_worker
from notifyflow.config import load_settings
from notifyflow.db.session import create_engine, session_factory
from notifyflow.logs import setup_logging
from notifyflow.providers import build_ai, build_channel, build_instagram
from notifyflow.worker import build_activities, build_worker, connect

log = logging.getLogger("tests.faults.worker_proc")


def _seconds(name: str) -> float | None:
    value = os.environ.get(name, "").strip()
    return float(value) if value else None


class _ShortActivityTimeouts(Interceptor):
    """Every activity the workflow schedules gets ``start_to_close`` = ``span``."""

    span = timedelta(minutes=2)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _Inbound


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> Any:
        input.start_to_close_timeout = _ShortActivityTimeouts.span
        return super().start_activity(input)


def _fail_over_fast(seconds: float) -> None:
    """``build_worker`` unchanged; its ``Worker`` gets the interceptor and a short sticky
    timeout."""
    _ShortActivityTimeouts.span = timedelta(seconds=seconds)

    def worker_with_interceptor(*args: Any, **kwargs: Any) -> Worker:
        return Worker(
            *args,
            interceptors=[_ShortActivityTimeouts()],
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=1),
            **kwargs,
        )

    product_worker.Worker = worker_with_interceptor  # type: ignore[misc, assignment]


async def main() -> None:
    settings = load_settings()
    activity_timeout = _seconds("FAULT_ACTIVITY_TIMEOUT")
    if activity_timeout is not None:
        _fail_over_fast(activity_timeout)
        log.info("activity start_to_close shortened to %ss", activity_timeout)
    engine = create_engine(
        settings.database_url, ping_after_idle=settings.db_ping_after_idle_seconds
    )
    db = session_factory(engine)
    client = await connect(settings)
    ai = build_ai(settings)
    openai_timeout = _seconds("FAULT_OPENAI_TIMEOUT")
    if openai_timeout is not None and ai.name == "openai":
        from notifyflow.ai.openai_provider import OpenAIProvider

        ai = OpenAIProvider(settings, timeout=openai_timeout)
    whatsapp = build_channel(settings)
    twilio_timeout = _seconds("FAULT_TWILIO_TIMEOUT")
    if twilio_timeout is not None and whatsapp.name == "twilio":
        from notifyflow.channels.twilio_channel import TwilioChannel

        whatsapp = TwilioChannel(settings, timeout=twilio_timeout)
    instagram = build_instagram(settings)
    worker = build_worker(
        client, settings.temporal_task_queue, build_activities(db, ai, whatsapp, instagram)
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def orphan_watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                log.warning("the test process is gone; stopping")
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(orphan_watch())
    async with worker:
        ready = os.environ.get("FAULT_WORKER_READY_FILE")
        if ready:
            Path(ready).write_text(str(os.getpid()))
        log.info("fault worker %d polling %s", os.getpid(), settings.temporal_task_queue)
        await stop.wait()
    watcher.cancel()
    for resource in (whatsapp, instagram, ai):
        closer = getattr(resource, "aclose", None)
        if closer is not None:
            await closer()
    await engine.dispose()


if __name__ == "__main__":
    setup_logging(os.environ.get("NOTIFYFLOW_LOG_LEVEL", "INFO"), json_lines=True)
    asyncio.run(main())
