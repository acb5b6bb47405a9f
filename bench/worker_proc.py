"""The benchmark's worker process: the product's worker (``build_activities`` +
``build_worker``, the real TwilioChannel pointed at the fake, the offline AI) with the bench's
floor workflows registered in the same Worker, instrumented.

Settings come from the environment like ``notifyflow worker``; the worker tuning comes as a JSON
argument. The parent talks to it over stdin/stdout, one JSON object per line:
``snapshot`` (counters), ``gc`` (collect, settle, then snapshot), ``statements`` (per-statement
counts and time), ``quit``. EOF on stdin also stops it. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bench.worker")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _tuned_worker_factory(
    real: Callable[..., Any], tuning: dict[str, Any], workflows: list[type], activities: list[Any]
) -> Callable[..., Any]:
    """Wraps temporalio's Worker as the product's ``build_worker`` calls it: the bench's
    workflows and activity join the product's, and the bench's tuning wins."""
    from temporalio.worker import PollerBehaviorAutoscaling, PollerBehaviorSimpleMaximum

    def poller(value: Any) -> Any:
        if value == "auto":
            return PollerBehaviorAutoscaling()
        return PollerBehaviorSimpleMaximum(maximum=int(value))

    def factory(*args: Any, **kwargs: Any) -> Any:
        kwargs["workflows"] = [*kwargs.get("workflows", []), *workflows]
        # The floor's workflows are compiled once like the product's (build_worker does it for
        # those): B0 stays the same floor the product's workflows run on.
        from notifyflow import workflow_code_cache

        workflow_code_cache.install(workflows)
        kwargs["activities"] = [*kwargs.get("activities", []), *activities]
        for key, value in tuning.items():
            if value is None:
                continue
            if key == "workflow_runner":
                from temporalio.worker import UnsandboxedWorkflowRunner
                from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

                kwargs["workflow_runner"] = (
                    UnsandboxedWorkflowRunner()
                    if value == "unsandboxed"
                    else SandboxedWorkflowRunner()
                )
            elif key == "workflow_task_pollers":
                kwargs["workflow_task_poller_behavior"] = poller(value)
            elif key == "activity_task_pollers":
                kwargs["activity_task_poller_behavior"] = poller(value)
            else:
                kwargs[key] = value
        for key, value in kwargs.items():
            if key in ("workflows", "activities"):
                continue
            if "runner" in key:
                effective[key] = type(value).__name__
            elif isinstance(value, int | float | str | bool) or "poller" in key:
                effective[key] = (
                    value if isinstance(value, int | float | str | bool) else repr(value)
                )
        effective.setdefault("workflow_runner", "SandboxedWorkflowRunner (SDK default)")
        effective.setdefault("max_cached_workflows", "1000 (SDK default)")
        effective["workflows"] = [getattr(w, "__name__", str(w)) for w in kwargs["workflows"]]
        effective["activities"] = len(kwargs["activities"])
        return real(*args, **kwargs)

    effective: dict[str, Any] = {}
    factory.effective = effective  # type: ignore[attr-defined]
    return factory


async def amain(tuning: dict[str, Any], out: Any) -> None:
    import notifyflow.worker as product
    from bench.instrument import GcClock, SqlCounters, memory_mb, self_cpu_ms
    from bench.workflows import ACTIVITIES, WORKFLOWS
    from notifyflow.config import Settings
    from notifyflow.db.session import create_engine, session_factory
    from notifyflow.providers import build_ai, build_channel, build_instagram

    settings = Settings()
    engine_options = tuning.pop("engine_options", None)
    if engine_options:
        # An experiment only: the product's create_engine, with some arguments overridden.
        import notifyflow.db.session as session_module

        real_create = getattr(session_module, "create_async_engine")  # noqa: B009

        def create_with_options(url: str, **kwargs: Any) -> Any:
            return real_create(url, **{**kwargs, **engine_options})

        setattr(session_module, "create_async_engine", create_with_options)  # noqa: B010
    engine = create_engine(
        settings.database_url, ping_after_idle=settings.db_ping_after_idle_seconds
    )
    counters = SqlCounters(engine)
    gc_clock = GcClock().install()
    db = session_factory(engine)
    client = await product.connect(settings)
    ai = build_ai(settings)
    whatsapp = build_channel(settings)
    instagram = build_instagram(settings)
    activities = product.build_activities(db, ai, whatsapp, instagram)
    # The product's build_worker, with the experiment's Worker tuning in its place.
    real = getattr(product, "Worker")  # noqa: B009
    factory = _tuned_worker_factory(real, tuning, WORKFLOWS, ACTIVITIES)
    setattr(product, "Worker", factory)  # noqa: B010
    try:
        worker = product.build_worker(client, settings.temporal_task_queue, activities)
    finally:
        setattr(product, "Worker", real)  # noqa: B010

    def write(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj, default=str) + "\n")
        out.flush()

    def snapshot() -> dict[str, Any]:
        return {
            "time": time.time(),
            "cpu_ms": self_cpu_ms(),
            **{k.lower(): v for k, v in memory_mb().items()},
            "sql": counters.snapshot(),
            "gc": gc_clock.snapshot(),
            "threads": len(os.listdir("/proc/self/task")),
        }

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with worker:
        write(
            {
                "ready": True,
                "pid": os.getpid(),
                "worker": factory.effective,  # type: ignore[attr-defined]
                "ai": ai.name,
                "engine_options": engine_options,
                "channel": whatsapp.name,
                **snapshot(),
            }
        )
        while not stop.is_set():
            line_task = asyncio.ensure_future(reader.readline())
            stop_task = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({line_task, stop_task}, return_when="FIRST_COMPLETED")
            if stop_task not in done:
                stop_task.cancel()
            if line_task not in done:
                line_task.cancel()
                break
            line = line_task.result()
            if not line:
                break  # the parent is gone
            request = json.loads(line)
            cmd = request.get("cmd")
            if cmd == "snapshot":
                write(snapshot())
            elif cmd == "gc":
                for _ in range(3):
                    gc.collect()
                await asyncio.sleep(float(request.get("settle", 2.0)))
                gc.collect()
                write(snapshot())
            elif cmd == "statements":
                write({"statements": counters.statement_table()})
            elif cmd == "quit":
                write({"bye": True})
                break
            else:
                write({"error": f"unknown command {cmd!r}"})
    for channel in (whatsapp, instagram):
        for name in ("aclose", "close"):
            closer = getattr(channel, name, None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
                break
    await engine.dispose()


def main() -> None:
    _die_with_parent()
    # The protocol owns the real stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    logging.basicConfig(
        level=os.environ.get("BENCH_WORKER_LOG", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s worker %(levelname)s %(name)s: %(message)s",
    )
    tuning = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    asyncio.run(amain(tuning, out))


if __name__ == "__main__":
    main()
