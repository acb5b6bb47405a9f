"""One benchmark run: start everything, run the phases, gather the figures, stop everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from temporalio.client import WorkflowHistory

from bench.answer_path import answer_stages
from bench.answer_path import summarize as summarize_stages
from bench.fake_process import FakeTwilioProcess
from bench.fanout import DEFAULT_SIZES, fanout_figures, run_fanout
from bench.infra import BenchError, Database, TemporalServer, WorkerProcess, tail
from bench.instrument import (
    CLOCK_TICKS,
    SqlCounters,
    machine_cpu,
    postgres_cpu_ms,
    proc_cpu_ms,
    self_cpu_ms,
)
from bench.report import TARGETS, ratio, summary, target_met
from bench.tracker import Tracker

TASK_QUEUE = "notifyflow-bench"
QUESTION_TYPE = "user_question_request"


@dataclass
class BenchConfig:
    mode: str = "full"
    concurrency: int = 32
    b0_workflows: int = 2000
    b1_updates: int = 1000
    notifications: int = 1000
    latency_samples: int = 200
    open_notifications: int = 10_000
    open_concurrency: int = 64
    merchants: int = 100
    history_samples: int = 100
    warmup: int = 32
    # The fan-out series: notifications one at a time per merchant size (admins).
    fanout: int = 40
    fanout_sizes: tuple[int, ...] = DEFAULT_SIZES
    database_url: str | None = None
    profile: bool = False
    # Worker tuning (None: what the product's build_worker / the SDK choose).
    max_cached_workflows: int | None = None
    max_concurrent_workflow_tasks: int | None = None
    max_concurrent_activities: int | None = None
    max_concurrent_local_activities: int | None = None
    workflow_task_pollers: str | None = None
    activity_task_pollers: str | None = None
    workflow_runner: str | None = None  # sandboxed | unsandboxed (an experiment)
    engine_options: dict[str, Any] | None = None  # the worker's engine (an experiment)
    # Also measure the SDK's own memory floor: as many bare waiting workflows open at once.
    open_floor: bool = False
    # Before answering: wait until the workflow waits (history long-poll), or not at all.
    settle: str = "history"
    # Bound on any single wait (seconds), scaled up with the counts where needed.
    op_timeout: float = 120.0

    def tuning(self) -> dict[str, Any]:
        return {
            "max_cached_workflows": self.max_cached_workflows,
            "max_concurrent_workflow_tasks": self.max_concurrent_workflow_tasks,
            "max_concurrent_activities": self.max_concurrent_activities,
            "max_concurrent_local_activities": self.max_concurrent_local_activities,
            "workflow_task_pollers": self.workflow_task_pollers,
            "activity_task_pollers": self.activity_task_pollers,
            "workflow_runner": self.workflow_runner,
            "engine_options": self.engine_options,
        }


@dataclass
class Phase:
    """Counters of every process at the start of a phase; ``end`` turns them into deltas."""

    started: float
    worker: dict[str, Any]
    starter_sql: dict[str, Any]
    server_cpu: float | None
    postgres_cpu: float
    parent_cpu: float
    machine: tuple[float, float]


async def run_pool(
    count: int,
    concurrency: int,
    job: Callable[[int], Awaitable[Any]],
    advance: Callable[[], None] | None = None,
) -> tuple[list[Any], list[tuple[int, BaseException]]]:
    """``job(0..count-1)`` with at most ``concurrency`` in flight; errors are collected."""
    results: list[Any] = [None] * count
    errors: list[tuple[int, BaseException]] = []
    indices = iter(range(count))

    async def lane() -> None:
        for i in indices:
            try:
                results[i] = await job(i)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append((i, exc))
            if advance is not None:
                advance()

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, count)))))
    return results, errors


class Bench:
    def __init__(self, cfg: BenchConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.notes: list[str] = []
        self.raw: dict[str, Any] = {}
        self.samples: dict[str, list[float]] = {}
        self.requested: list[int] = []
        self.errors: Counter[str] = Counter()
        self.error_examples: list[str] = []
        self.run_id = uuid.uuid4().hex[:6]
        # L's answers: notification -> (answer sent, customer's message at the fake).
        self.l_answer_times: dict[int, tuple[float, float]] = {}
        # The fake Twilio process's CPU at its last reading; what it accepted before the
        # tracker was attached (not relayed to it).
        self._fake_cpu_ms = 0.0
        self._accepted_unrelayed = 0

    # ---- helpers ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        self.console.log(message)

    def progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    def _error(self, where: str, exc: BaseException) -> None:
        key = f"{where}: {type(exc).__name__}"
        self.errors[key] += 1
        if len(self.error_examples) < 10:
            self.error_examples.append(f"{where}: {type(exc).__name__}: {exc}"[:500])

    def _driver_cpu_ms(self) -> float:
        """This process's CPU and the fake Twilio's (a process of its own; its last reading
        if it has gone, so a phase's figure never loses what it had spent)."""
        fake = proc_cpu_ms(self.fake.pid)
        if fake is not None:
            self._fake_cpu_ms = fake
        return self_cpu_ms() + self._fake_cpu_ms

    async def begin(self) -> Phase:
        return Phase(
            started=time.perf_counter(),
            worker=await self.worker.call("snapshot"),
            starter_sql=self.starter_sql.snapshot(),
            server_cpu=proc_cpu_ms(self.server.pid) if self.server.pid else None,
            postgres_cpu=postgres_cpu_ms(self.database.database_name),
            parent_cpu=self._driver_cpu_ms(),
            machine=machine_cpu(),
        )

    async def end(self, phase: Phase, count: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - phase.started
        worker = await self.worker.call("snapshot")
        starter = self.starter_sql.snapshot()
        server_cpu = proc_cpu_ms(self.server.pid) if self.server.pid else None
        busy, total = machine_cpu()
        ws, we = phase.worker["sql"], worker["sql"]
        per = max(count, 1)

        def d(a: dict[str, Any], b: dict[str, Any], key: str) -> float:
            return float(b[key]) - float(a[key])

        out = {
            "count": count,
            "seconds": elapsed,
            "throughput_per_s": count / elapsed if elapsed > 0 else None,
            "worker_cpu_ms_per": (worker["cpu_ms"] - phase.worker["cpu_ms"]) / per,
            # Of that, in the cyclic garbage collector; its collections by generation.
            "worker_gc_ms_per": d(phase.worker["gc"], worker["gc"], "cpu_ms") / per,
            "worker_gc_collections": [
                b - a
                for a, b in zip(
                    phase.worker["gc"]["collections"], worker["gc"]["collections"], strict=True
                )
            ],
            "worker_sql_statements_per": d(ws, we, "statements") / per,
            "worker_sql_commits_per": d(ws, we, "commits") / per,
            # SQL compiled instead of taken from SQLAlchemy's statement cache.
            "worker_sql_compiled_per": d(ws, we, "compiled") / per,
            "worker_sql_rollbacks_per": d(ws, we, "rollbacks") / per,
            "worker_sql_begins_per": d(ws, we, "begins") / per,
            "worker_pool_checkouts_per": d(ws, we, "checkouts") / per,
            # Statements, BEGIN/COMMIT/ROLLBACK outside autocommit, pre-pings (instrument.py).
            "worker_sql_round_trips_per": d(ws, we, "round_trips") / per,
            "worker_sql_ms_per": d(ws, we, "sql_seconds") * 1000 / per,
            "worker_sql_by_verb_per": {
                verb: (we["by_verb"].get(verb, 0) - ws["by_verb"].get(verb, 0)) / per
                for verb in we["by_verb"]
            },
            "starter_sql_statements_per": d(phase.starter_sql, starter, "statements") / per,
            "starter_sql_commits_per": d(phase.starter_sql, starter, "commits") / per,
            "starter_sql_round_trips_per": d(phase.starter_sql, starter, "round_trips") / per,
            "server_cpu_ms_per": (
                (server_cpu - phase.server_cpu) / per
                if server_cpu is not None and phase.server_cpu is not None
                else None
            ),
            # Approximate: a backend that exits takes its CPU time with it.
            "postgres_cpu_ms_per": max(
                0.0, postgres_cpu_ms(self.database.database_name) - phase.postgres_cpu
            )
            / per,
            "driver_cpu_ms_per": (self._driver_cpu_ms() - phase.parent_cpu) / per,
            "machine_cpu_utilization": (
                (busy - phase.machine[0]) / (total - phase.machine[1])
                if total > phase.machine[1]
                else None
            ),
            "worker_rss_mb": worker.get("vmrss"),
        }
        # Other work on the machine (other test runs) skews every figure: its share of the
        # busy CPU during the phase.
        busy_ms = (busy - phase.machine[0]) * 1000.0 / CLOCK_TICKS
        own = sum(
            v * per
            for v in (
                out["worker_cpu_ms_per"],
                out["server_cpu_ms_per"] or 0.0,
                out["postgres_cpu_ms_per"],
                out["driver_cpu_ms_per"],
            )
        )
        out["foreign_cpu_share"] = max(0.0, 1.0 - own / busy_ms) if busy_ms > 0 else None
        return out

    # ---- setup ----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        with contextlib.suppress(OSError):
            self.raw["loadavg_at_start"] = os.getloadavg()
        workdir = Path(tempfile.mkdtemp(prefix="notifyflow-bench-"))
        failed = True
        async with AsyncExitStack() as stack:
            stack.callback(self._cleanup_workdir, workdir, lambda: failed)
            self.server = TemporalServer(workdir / "temporal.log")
            stack.callback(self.server.stop)
            self.log(f"starting the Temporal dev server ({self.server.binary.name}, in memory)")
            await self.server.start()

            self.database = Database.create(cfg.database_url, workdir)
            stack.callback(self.database.drop)
            if self.database.dialect != "postgresql":
                self.notes.append(f"database: {self.database.note}")
            self.log(f"database: {self.database.dialect}, {self.database.note}")
            await self._prepare_database(stack)

            # Its own process: a request to it must not wait for this driver's GIL.
            self.fake = FakeTwilioProcess(relay=True)
            stack.callback(self.fake.stop)
            await self._register_templates()

            self.shops = await self._make_shops(cfg.merchants)
            self.fanout_shops = await self._make_fanout_shops(cfg.fanout_sizes)
            self.settings = self._settings()
            from notifyflow.worker import connect

            self.client = await connect(self.settings)

            self.worker = WorkerProcess(self._worker_env(), cfg.tuning(), workdir / "worker.log")
            stack.push_async_callback(self.worker.stop)
            self.log("starting the worker process")
            try:
                ready = await self.worker.start()
            except BenchError:
                raise BenchError(
                    "the worker did not start:\n" + tail(self.worker.log_path)
                ) from None
            self.raw["worker"] = {
                "pid": ready.get("pid"),
                "settings": ready.get("worker"),
                "ai": ready.get("ai"),
                "channel": ready.get("channel"),
                "rss_mb_idle": ready.get("vmrss"),
                "engine_options": ready.get("engine_options"),
            }
            self.tracker = self._tracker()
            self._accepted_unrelayed = self.fake.accepted()
            self.tracker.attach(self.fake)
            stack.callback(self.tracker.detach, self.fake)
            try:
                await self._phases()
            except asyncio.CancelledError:
                failed = False  # interrupted: nothing to look into
                raise
            except BaseException:
                if self.worker.process is not None and not self.worker.alive:
                    self.notes.append("the worker exited: " + tail(self.worker.log_path, 5))
                raise
            failed = False
        self.raw["elapsed_seconds"] = time.perf_counter() - started
        return self._result()

    def _cleanup_workdir(self, workdir: Path, failed: Callable[[], bool]) -> None:
        if failed():
            self.console.log(f"[yellow]logs kept in {workdir}[/]")
            return
        shutil.rmtree(workdir, ignore_errors=True)

    async def _prepare_database(self, stack: AsyncExitStack) -> None:
        from notifyflow.db.migrate import upgrade_async
        from notifyflow.db.session import create_engine, session_factory

        t0 = time.perf_counter()
        await upgrade_async(self.database.url)
        self.engine = create_engine(self.database.url)
        stack.push_async_callback(self.engine.dispose)
        self.starter_sql = SqlCounters(self.engine)
        self.db = session_factory(self.engine)
        self.log(f"migrated (default templates included) in {time.perf_counter() - t0:.1f} s")

    async def _register_templates(self) -> None:
        from sqlalchemy import select

        from notifyflow.db.tables import CampaignTemplate

        async with self.db() as session:
            rows = (await session.scalars(select(CampaignTemplate))).all()
        self.campaigns = {r.content_sid: r.campaign for r in rows}
        for r in rows:
            self.fake.register_template(r.content_sid, r.body)

    async def _make_shops(self, count: int) -> list[Any]:
        from tests.fixtures.lifecycle import make_shop

        shops = []
        for _ in range(count):
            shops.append(await make_shop(self.db))
        return shops

    async def _make_fanout_shops(self, sizes: tuple[int, ...]) -> dict[int, Any]:
        """One merchant per size of the fan-out series, built like the others but with that
        many admins."""
        from tests.fixtures.lifecycle import make_shop

        return {size: await make_shop(self.db, admins=size) for size in sizes}

    def _settings(self) -> Any:
        from notifyflow.config import Settings

        return Settings(
            DATABASE_URL=self.database.url,
            TEMPORAL_ADDRESS=self.server.address,
            TEMPORAL_NAMESPACE="default",
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            TEMPORAL_API_KEY=None,
            NOTIFYFLOW_AI="offline",
            NOTIFYFLOW_CHANNEL="twilio",
            TWILIO_ACCOUNT_SID=self.fake.account_sid,
            TWILIO_AUTH_TOKEN=self.fake.auth_token,
            TWILIO_API_BASE_URL=self.fake.base_url,
            # No reminder may fire while the open-load phase waits.
            NOTIFYFLOW_REMIND_AFTER=timedelta(hours=6),
            NOTIFYFLOW_ESCALATE_AFTER=timedelta(hours=12),
            NOTIFYFLOW_AUTO_CLOSE_AFTER=timedelta(hours=24),
        )

    def _worker_env(self) -> dict[str, str]:
        drop = ("OPENAI_API_KEY", "TEMPORAL_API_KEY", "TWILIO_MESSAGING_SERVICE_SID")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(
            DATABASE_URL=self.database.url,
            TEMPORAL_ADDRESS=self.server.address,
            TEMPORAL_NAMESPACE="default",
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            NOTIFYFLOW_AI="offline",
            NOTIFYFLOW_CHANNEL="twilio",
            TWILIO_ACCOUNT_SID=self.fake.account_sid,
            TWILIO_AUTH_TOKEN=self.fake.auth_token,
            TWILIO_API_BASE_URL=self.fake.base_url,
            NOTIFYFLOW_PUBLIC_URL="http://127.0.0.1:9",
            NOTIFYFLOW_REMIND_AFTER="21600",
            NOTIFYFLOW_ESCALATE_AFTER="43200",
            NOTIFYFLOW_AUTO_CLOSE_AFTER="86400",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p
            ),
        )
        return env

    def _tracker(self) -> Tracker:
        from notifyflow.models.notification import (
            NOTIFICATION_CONFIG,
            Campaign,
            NotificationType,
        )

        cfg = NOTIFICATION_CONFIG[NotificationType(QUESTION_TYPE)]
        return Tracker(
            loop=asyncio.get_running_loop(),
            campaigns=self.campaigns,
            request_campaign=cfg.requested_campaign.value,
            closure_campaign=Campaign.notification_closed.value,
            customer_phones={s.customer_phone for s in self.shops}
            | {s.customer_phone for s in self.fanout_shops.values()},
            expected_requests=len(self.shops[0].admins),
            requests_by_phone={
                admin.phone: len(shop.admins)
                for shop in [*self.shops, *self.fanout_shops.values()]
                for admin in shop.admins
            },
        )

    # ---- the lifecycle, as a client sees it -----------------------------------------------

    async def request(self, i: int, shop: Any = None) -> int:
        """Request a notification for ``shop`` (default: the i-th of the bench's shops)."""
        from notifyflow.models.ids import parse_notification_id
        from notifyflow.starter import request_notification

        shop = shop or self.shops[i % len(self.shops)]
        view = await request_notification(
            self.client,
            self.db,
            type=QUESTION_TYPE,
            conversation_id=shop.conversation_id,
            context={"question": f"Are you open on Saturday morning? (bench {self.run_id} #{i})"},
            settings=self.settings,
        )
        n = parse_notification_id(view.notification_id)
        self.requested.append(n)
        return n

    async def answer(self, i: int, n: int, shop: Any = None) -> float:
        """Answer as the shop's first admin; returns the wall-clock time just before."""
        from notifyflow.models.ids import format_notification_id
        from notifyflow.starter import answer_notification

        shop = shop or self.shops[i % len(self.shops)]
        t0 = time.time()
        await answer_notification(
            self.client,
            self.db,
            format_notification_id(n),
            answered_by=shop.admins[0].id,
            answer={"answer": f"We open at 9 am on Saturday (ref NOTIF_{n})."},
        )
        return t0

    async def settled(self, n: int) -> None:
        """Until the workflow waits for its answer, as when an admin answers minutes later:
        it started its reminder timer, or every activity it scheduled has closed and a
        workflow task completed after that. Answering the moment the messages land would often
        fold the answer into the open activity's workflow task and skip the timer, which no
        real notification does. Read by long-polling the history (no busy polling)."""
        if self.cfg.settle == "none":
            return
        from temporalio.api.enums.v1 import EventType

        from notifyflow.models.ids import workflow_id_for

        closing = {
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
        }
        handle = self.client.get_workflow_handle(workflow_id_for(n))

        async def watch() -> None:
            scheduled = closed = 0
            last_closed = last_completed = -1
            async for event in handle.fetch_history_events(wait_new_event=True):
                kind = event.event_type
                if kind == EventType.EVENT_TYPE_TIMER_STARTED:
                    return
                if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    scheduled += 1
                elif kind in closing:
                    closed += 1
                    last_closed = event.event_id
                elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    last_completed = event.event_id
                    if scheduled == closed and last_completed > last_closed and closed:
                        return
                elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                    return

        await asyncio.wait_for(watch(), self.cfg.op_timeout)

    async def completed(self, n: int) -> None:
        from notifyflow.models.ids import workflow_id_for

        handle = self.client.get_workflow_handle(workflow_id_for(n))
        await asyncio.wait_for(handle.result(), self.cfg.op_timeout)

    async def lifecycle(self, i: int) -> dict[str, float]:
        timeout = self.cfg.op_timeout
        t_req = time.perf_counter()
        n = await self.request(i)
        t_started = time.perf_counter()
        await self.tracker.wait_notified(n, timeout)
        await self.settled(n)
        t_notified = time.perf_counter()
        t0_wall = await self.answer(i, n)
        t_accepted = time.perf_counter()
        delivered_at = await self.tracker.wait_delivered(n, timeout)
        await self.completed(n)
        t_done = time.perf_counter()
        return {
            "n": n,
            "request_ms": (t_started - t_req) * 1000,
            "request_to_waiting_ms": (t_notified - t_req) * 1000,
            "answer_accepted_ms": (t_accepted - t_notified) * 1000,
            "answer_to_delivered_ms": (delivered_at - t0_wall) * 1000,
            "answer_to_completed_ms": (t_done - t_notified) * 1000,
            "total_ms": (t_done - t_req) * 1000,
            "answered_at": t0_wall,
            "delivered_at": delivered_at,
        }

    # ---- phases ----------------------------------------------------------------------------

    async def _phases(self) -> None:
        await self._warmup()
        await self._b0()
        await self._b1()
        await self._n()
        await self._latency()
        self.raw["fanout"] = await run_fanout(self)
        await self._histories()
        await self._open_load()
        await self._verify()

    async def _warmup(self) -> None:
        from bench.workflows import NoopWorkflow

        count = self.cfg.warmup
        if count <= 0:
            return
        # At least one notification per merchant: the first one a merchant's admins get also
        # creates their conversations (once per admin, not per notification), which the
        # measured phases would otherwise count against the happy path. What that costs is
        # kept under raw.warmup.
        notifications = max(count, len(self.shops))
        self.log(f"warm-up: {count} B0 workflows and {notifications} notifications")

        async def b0(i: int) -> Any:
            return await self.client.execute_workflow(
                NoopWorkflow.run,
                i,
                id=f"warm-{self.run_id}-{i}",
                task_queue=TASK_QUEUE,
                execution_timeout=timedelta(seconds=self.cfg.op_timeout),
            )

        _, errors = await run_pool(count, self.cfg.concurrency, b0)
        phase = await self.begin()
        _, errors2 = await run_pool(notifications, self.cfg.concurrency, self.lifecycle)
        self.raw["warmup"] = await self.end(phase, notifications - len(errors2))
        for _, exc in [*errors, *errors2]:
            self._error("warm-up", exc)
        if errors or errors2:
            first = (errors or errors2)[0][1]
            raise BenchError(f"the warm-up failed: {type(first).__name__}: {first}")

    async def _b0(self) -> None:
        from bench.workflows import NoopWorkflow

        cfg = self.cfg
        self.log(f"B0: {cfg.b0_workflows} trivial workflows, {cfg.concurrency} in flight")

        async def job(i: int) -> float:
            t0 = time.perf_counter()
            await self.client.execute_workflow(
                NoopWorkflow.run,
                i,
                id=f"b0-{self.run_id}-{i}",
                task_queue=TASK_QUEUE,
                execution_timeout=timedelta(seconds=cfg.op_timeout),
            )
            return (time.perf_counter() - t0) * 1000

        with self.progress() as progress:
            task = progress.add_task("B0 workflows", total=cfg.b0_workflows)
            phase = await self.begin()
            results, errors = await run_pool(
                cfg.b0_workflows, cfg.concurrency, job, lambda: progress.advance(task)
            )
            stats = await self.end(phase, cfg.b0_workflows - len(errors))
        for _, exc in errors:
            self._error("B0", exc)
        stats["errors"] = len(errors)
        stats["workflow_ms"] = summary([r for r in results if r is not None])
        self.raw["b0"] = stats

    async def _b1(self) -> None:
        from bench.workflows import WaitingWorkflow

        cfg = self.cfg
        lanes = max(1, cfg.concurrency)
        handles = [
            await self.client.start_workflow(
                WaitingWorkflow.run,
                id=f"b1-{self.run_id}-{k}",
                task_queue=TASK_QUEUE,
                execution_timeout=timedelta(hours=2),
            )
            for k in range(lanes)
        ]
        try:
            # The first update of each also waits for the first workflow task: not timed.
            await asyncio.gather(*(h.execute_update(WaitingWorkflow.ping, -1) for h in handles))
            serial: list[float] = []
            loaded: list[float] = []
            self.log(
                f"B1: {cfg.b1_updates} bare updates one at a time, then "
                f"{cfg.b1_updates} with {lanes} in flight"
            )
            with self.progress() as progress:
                task = progress.add_task("B1 updates", total=cfg.b1_updates * 2)
                for i in range(cfg.b1_updates):
                    handle = handles[i % len(handles)]
                    t0 = time.perf_counter()
                    await handle.execute_update(
                        WaitingWorkflow.ping, i, rpc_timeout=timedelta(seconds=cfg.op_timeout)
                    )
                    serial.append((time.perf_counter() - t0) * 1000)
                    progress.advance(task)
                per_lane = [
                    cfg.b1_updates // lanes + (1 if k < cfg.b1_updates % lanes else 0)
                    for k in range(lanes)
                ]

                async def lane(k: int) -> None:
                    for i in range(per_lane[k]):
                        t0 = time.perf_counter()
                        await handles[k].execute_update(
                            WaitingWorkflow.ping, i, rpc_timeout=timedelta(seconds=cfg.op_timeout)
                        )
                        loaded.append((time.perf_counter() - t0) * 1000)
                        progress.advance(task)

                phase = await self.begin()
                await asyncio.gather(*(lane(k) for k in range(lanes)))
                stats = await self.end(phase, cfg.b1_updates)
        finally:
            for h in handles:
                with contextlib.suppress(Exception):
                    await h.signal(WaitingWorkflow.finish)
        self.samples["b1_serial"] = serial
        self.samples["b1_loaded"] = loaded
        self.raw["b1"] = {
            "serial": summary(serial),
            "loaded": summary(loaded),
            "loaded_updates_per_s": stats["throughput_per_s"],
            "loaded_phase": stats,
        }

    async def _n(self) -> None:
        cfg = self.cfg
        self.log(f"N: {cfg.notifications} full lifecycles, {cfg.concurrency} in flight")
        profiler = self._start_profiler() if cfg.profile else None
        with self.progress() as progress:
            task = progress.add_task("N lifecycles", total=cfg.notifications)
            phase = await self.begin()
            results, errors = await run_pool(
                cfg.notifications, cfg.concurrency, self.lifecycle, lambda: progress.advance(task)
            )
            stats = await self.end(phase, cfg.notifications - len(errors))
        if profiler is not None:
            stats["profile"] = self._stop_profiler(*profiler)
        for _, exc in errors:
            self._error("N", exc)
        done = [r for r in results if r is not None]
        self.n_ids = [int(r["n"]) for r in done]
        self.n_answer_times = {int(r["n"]): (r["answered_at"], r["delivered_at"]) for r in done}
        stats["errors"] = len(errors)
        for key in (
            "request_ms",
            "request_to_waiting_ms",
            "answer_accepted_ms",
            "answer_to_delivered_ms",
            "answer_to_completed_ms",
            "total_ms",
        ):
            stats[key.removesuffix("_ms")] = summary([r[key] for r in done])
        self.samples["n_loaded"] = [r["answer_to_delivered_ms"] for r in done]
        statements = await self.worker.call("statements")
        stats["top_statements"] = self._top_statements(statements["statements"])
        self.raw["n"] = stats

    def _top_statements(self, table: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
        """Over the whole run so far (warm-up, B0, B1, N): the statements by count."""
        rows = sorted(table.items(), key=lambda kv: -kv[1]["count"])[:25]
        return [
            {
                "count": int(v["count"]),
                "compiled": int(v.get("compiled", 0)),
                "ms": round(v["seconds"] * 1000, 1),
                "sql": k[:240],
            }
            for k, v in rows
        ]

    async def _latency(self) -> None:
        cfg = self.cfg
        count = cfg.latency_samples
        self.log(f"L: {count} answers one at a time (answer→delivered without load)")
        with self.progress() as progress:
            task = progress.add_task("L opening", total=count)
            opened, errors = await run_pool(
                count, cfg.concurrency, self._open_one, lambda: progress.advance(task)
            )
            for _, exc in errors:
                self._error("L open", exc)
            ids = [(i, n) for i, n in enumerate(opened) if n is not None]
            await asyncio.sleep(0.5)
            task2 = progress.add_task("L answering", total=len(ids))
            delivered: list[float] = []
            completed: list[float] = []
            accepted: list[float] = []
            # A bare update after each answer, the same minute as it: B1's own phase ran
            # earlier, and on this shared machine its p95 moved by 70 % between runs minutes
            # apart. Reported beside the ratio to B1, which stays the figure.
            beside = await self._bare_update_handle("l")
            bare: list[float] = []
            for i, n in ids:
                try:
                    t_perf = time.perf_counter()
                    t0 = await self.answer(i, n)
                    accepted.append((time.perf_counter() - t_perf) * 1000)
                    at = await self.tracker.wait_delivered(n, cfg.op_timeout)
                    delivered.append((at - t0) * 1000)
                    self.l_answer_times[n] = (t0, at)
                    await self.completed(n)
                    completed.append((time.perf_counter() - t_perf) * 1000)
                except Exception as exc:  # noqa: BLE001 - counted
                    self._error("L answer", exc)
                try:
                    bare.append(await self._bare_update(beside, i))
                except Exception as exc:  # noqa: BLE001 - counted
                    self._error("L bare update", exc)
                progress.advance(task2)
            await self._finish_bare(beside)
        self.samples["n_serial"] = delivered
        self.samples["b1_interleaved"] = bare
        self.raw["latency"] = {
            "answer_accepted": summary(accepted),
            "answer_to_delivered": summary(delivered),
            "answer_to_completed": summary(completed),
            "b1_interleaved": summary(bare),
        }

    async def _bare_update_handle(self, tag: str) -> Any:
        from bench.workflows import WaitingWorkflow

        handle = await self.client.start_workflow(
            WaitingWorkflow.run,
            id=f"b1{tag}-{self.run_id}",
            task_queue=TASK_QUEUE,
            execution_timeout=timedelta(hours=2),
        )
        # The first update also waits for the first workflow task: not timed.
        await handle.execute_update(WaitingWorkflow.ping, -1)
        return handle

    async def _bare_update(self, handle: Any, i: int) -> float:
        from bench.workflows import WaitingWorkflow

        t0 = time.perf_counter()
        await handle.execute_update(
            WaitingWorkflow.ping, i, rpc_timeout=timedelta(seconds=self.cfg.op_timeout)
        )
        return (time.perf_counter() - t0) * 1000

    async def _finish_bare(self, handle: Any) -> None:
        from bench.workflows import WaitingWorkflow

        with contextlib.suppress(Exception):
            await handle.signal(WaitingWorkflow.finish)

    async def _open_one(self, i: int) -> int:
        n = await self.request(i)
        await self.tracker.wait_notified(n, self.cfg.op_timeout)
        await self.settled(n)
        return n

    async def _history(self, n: int) -> WorkflowHistory:
        """Notification ``n``'s history."""
        from notifyflow.models.ids import workflow_id_for

        return await self.client.get_workflow_handle(workflow_id_for(n)).fetch_history()

    async def _histories(self) -> None:
        from notifyflow.history_costs import history_cost

        ids = self.n_ids[: self.cfg.history_samples]
        costs = []
        stages = []
        kinds: Counter[str] = Counter()
        for n in ids:
            history = await self._history(n)
            stage = answer_stages(history, *self.n_answer_times[n])
            if stage is not None:
                stages.append(stage)
            cost = history_cost(history)
            costs.append(cost)
            kinds.update(cost.by_kind)
        # The quiet answers (L) too, all of them: where the time goes when nothing waits.
        quiet = []
        for n, times in self.l_answer_times.items():
            stage = answer_stages(await self._history(n), *times)
            if stage is not None:
                quiet.append(stage)
        b0_cost = history_cost(
            await self.client.get_workflow_handle(f"b0-{self.run_id}-0").fetch_history()
        )
        count = max(len(costs), 1)
        self.raw["history"] = {
            "samples": len(costs),
            "events_per_notification": sum(c.events for c in costs) / count,
            "actions_per_notification": sum(c.actions for c in costs) / count,
            "events_min_max": [
                min((c.events for c in costs), default=0),
                max((c.events for c in costs), default=0),
            ],
            "actions_min_max": [
                min((c.actions for c in costs), default=0),
                max((c.actions for c in costs), default=0),
            ],
            "events_by_kind_per_notification": {
                k: v / count for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
            },
            "answer_path_ms_in_n": summarize_stages(stages),
            "answer_path_ms_in_l": summarize_stages(quiet),
            "b0": {
                "events": b0_cost.events,
                "actions": b0_cost.actions,
                "by_kind": b0_cost.by_kind,
            },
        }

    async def _open_load(self) -> None:
        cfg = self.cfg
        count = cfg.open_notifications
        settle = await self.worker.call("gc", timeout=120)
        base_rss = settle.get("vmrss")
        floor = await self._open_floor(count) if cfg.open_floor else None
        if floor is not None:
            base_rss = floor["worker_rss_mb_after"]
        self.log(f"open load: {count:,} notifications opened, {cfg.open_concurrency} in flight")
        with self.progress() as progress:
            task = progress.add_task("open: requesting", total=count)
            phase = await self.begin()
            opened, errors = await run_pool(
                count, cfg.open_concurrency, self._open_one, lambda: progress.advance(task)
            )
            open_stats = await self.end(phase, count - len(errors))
            for _, exc in errors:
                self._error("open: request", exc)
            ids = [(i, n) for i, n in enumerate(opened) if n is not None]
            settled = await self.worker.call("gc", timeout=300, settle=3.0)
            rss_open = settled.get("vmrss")
            self.log(
                f"worker RSS with {len(ids):,} open: {rss_open:.1f} MB (before: {base_rss:.1f} MB)"
            )
            task2 = progress.add_task("open: answering", total=len(ids))

            async def answer(k: int) -> None:
                i, n = ids[k]
                await self.answer(i, n)
                await self.tracker.wait_delivered(n, cfg.op_timeout)

            phase = await self.begin()
            _, errors2 = await run_pool(
                len(ids), cfg.open_concurrency, answer, lambda: progress.advance(task2)
            )
            for _, exc in errors2:
                self._error("open: answer", exc)
            running = await self._wait_all_completed(progress)
            answer_stats = await self.end(phase, len(ids) - len(errors2))
        after = await self.worker.call("gc", timeout=300)
        open_ids = {n for _, n in ids}
        self.raw["open"] = {
            "requested": count,
            "opened": len(ids),
            "request_errors": len(errors),
            "answer_errors": len(errors2),
            "still_running_at_end": running,
            "worker_rss_mb_before": base_rss,
            "worker_rss_mb_open": rss_open,
            "worker_rss_mb_after_answers": after.get("vmrss"),
            "worker_rss_peak_mb": after.get("vmhwm"),
            "kb_per_open_notification": (
                (rss_open - base_rss) * 1024 / len(ids) if ids and rss_open and base_rss else None
            ),
            "floor": floor,
            "opening": open_stats,
            "answering": answer_stats,
            "duplicates": await self._duplicates(open_ids),
        }
        self.open_ids = open_ids

    async def _open_floor(self, count: int) -> dict[str, Any]:
        """The SDK's floor: ``count`` bare waiting workflows open at once (each has run its
        first workflow task and one update), the worker's RSS, then all finished."""
        from bench.workflows import WaitingWorkflow

        cfg = self.cfg
        before = (await self.worker.call("gc", timeout=120)).get("vmrss")
        handles: list[Any] = [None] * count
        self.log(f"open floor: {count:,} bare waiting workflows")

        async def start(k: int) -> None:
            handle = await self.client.start_workflow(
                WaitingWorkflow.run,
                id=f"floor-{self.run_id}-{k}",
                task_queue=TASK_QUEUE,
                execution_timeout=timedelta(hours=2),
            )
            await handle.execute_update(
                WaitingWorkflow.ping, k, rpc_timeout=timedelta(seconds=cfg.op_timeout)
            )
            handles[k] = handle

        async def finish(k: int) -> None:
            if handles[k] is not None:
                await handles[k].signal(WaitingWorkflow.finish)

        with self.progress() as progress:
            task = progress.add_task("floor: opening", total=count)
            _, errors = await run_pool(
                count, cfg.open_concurrency, start, lambda: progress.advance(task)
            )
            rss_open = (await self.worker.call("gc", timeout=300, settle=3.0)).get("vmrss")
            task2 = progress.add_task("floor: finishing", total=count)
            await run_pool(count, cfg.open_concurrency, finish, lambda: progress.advance(task2))
            await self._wait_all_completed(progress, "BenchWaitingWorkflow")
        after = (await self.worker.call("gc", timeout=300, settle=3.0)).get("vmrss")
        for _, exc in errors:
            self._error("floor", exc)
        opened = count - len(errors)
        return {
            "open": opened,
            "worker_rss_mb_before": before,
            "worker_rss_mb_open": rss_open,
            "worker_rss_mb_after": after,
            "kb_per_open_workflow": (
                (rss_open - before) * 1024 / opened if opened and rss_open and before else None
            ),
        }

    async def _wait_all_completed(
        self, progress: Progress, workflow_type: str = "NotificationWorkflow"
    ) -> int:
        """Until no workflow of that type runs (bounded); returns how many still run."""
        query = f'WorkflowType="{workflow_type}" AND ExecutionStatus="Running"'
        deadline = time.monotonic() + max(self.cfg.op_timeout, 0.05 * self.cfg.open_notifications)
        task: TaskID | None = None
        running = -1
        while time.monotonic() < deadline:
            running = (await self.client.count_workflows(query)).count
            if running == 0:
                break
            if task is None:
                task = progress.add_task(f"{workflow_type}: finishing", total=running)
            progress.update(task, completed=(progress.tasks[task].total or 0) - running)
            await asyncio.sleep(0.5)
        if task is not None:
            progress.update(task, completed=progress.tasks[task].total)
        return running

    async def _relay_caught_up(self, timeout: float = 10.0) -> None:
        """Until the tracker has seen every message the fake accepted so far: the fake's
        process relays them after it answers, so the last ones may still be on their way."""
        deadline = time.monotonic() + timeout
        while self.tracker.accepted + self._accepted_unrelayed < self.fake.accepted():
            if time.monotonic() > deadline:
                self.notes.append(
                    f"the fake accepted {self.fake.accepted()} messages, the tracker saw "
                    f"{self.tracker.accepted} within {timeout:.0f} s"
                )
                return
            await asyncio.sleep(0.05)

    async def _duplicates(self, ids: set[int]) -> int:
        await self._relay_caught_up()
        return self.tracker.duplicates(ids)

    async def _verify(self) -> None:
        """Every notification requested in this run: delivered in the database, and its
        customer message accepted by the fake; duplicates on the wire."""
        from sqlalchemy import func, select

        from notifyflow.db.tables import Notification

        await self._relay_caught_up()
        ids = sorted(set(self.requested))
        statuses: Counter[str] = Counter()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self.db() as session:
                rows = await session.execute(
                    select(Notification.status, func.count())
                    .where(Notification.id.in_(chunk))
                    .group_by(Notification.status)
                )
                for status, n in rows:
                    statuses[status] += n
        async with self.db() as session:
            delivered_ids = set(
                (
                    await session.scalars(
                        select(Notification.id).where(Notification.status == "delivered")
                    )
                ).all()
            )
        confirmed = [n for n in ids if n in delivered_ids and self.tracker.get(n).customer]
        fanout_ids = [n for s in self.raw["fanout"].values() for n in s["notification_ids"]]
        # Every admin but the one who answered is told it is closed: none in a merchant of one.
        others = {
            n: int(series["admins"]) - 1
            for series in self.raw["fanout"].values()
            for n in series["notification_ids"]
        }
        closures_missing = sum(
            1
            for n in ids
            if self.tracker.get(n).closures < others.get(n, len(self.shops[0].admins) - 1)
        )
        self.raw["verify"] = {
            "requested": len(ids),
            "statuses": dict(statuses),
            "delivered": len(confirmed),
            "lost": len(ids) - len(confirmed),
            "closure_notices_missing": closures_missing,
            "duplicates": self.tracker.duplicates(),
            "messages_accepted": self.tracker.accepted,
            "messages_unmatched": self.tracker.unmatched,
            "fanout_phase": {
                "requested": len(fanout_ids),
                "delivered": sum(
                    1 for n in fanout_ids if n in delivered_ids and self.tracker.get(n).customer
                ),
            },
            "open_phase": {
                "requested": self.cfg.open_notifications,
                "delivered": sum(
                    1 for n in self.open_ids if n in delivered_ids and self.tracker.get(n).customer
                ),
            },
        }

    # ---- profiling (py-spy on the worker during N) -------------------------------------------

    def _start_profiler(self) -> tuple[subprocess.Popen[bytes], Path] | None:
        spy = Path(sys.prefix) / "bin" / "py-spy"
        if not spy.exists():
            found = shutil.which("py-spy")
            if not found:
                self.notes.append("--profile: py-spy is not installed; no profile taken")
                return None
            spy = Path(found)
        out = Path(tempfile.mkdtemp(prefix="bench-spy-")) / "worker.raw"
        process = subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(self.worker.pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--output",
                str(out),
                "--nonblocking",
                # Only the thread holding the GIL: a thread blocked in a C call (a queue get,
                # libpq waiting to take the GIL back) is not CPU and would otherwise show as
                # the "self" time of the Python frame that made the call.
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return process, out

    def _stop_profiler(self, process: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
        from bench.profile import summarize

        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if not out.exists():
            return {"error": "py-spy wrote no profile"}
        self.profile_path = out
        return summarize(out)

    # ---- result -------------------------------------------------------------------------

    def _result(self) -> dict[str, Any]:
        raw = self.raw
        b0, n, hist, op = raw["b0"], raw["n"], raw["history"], raw["open"]
        b1_serial_p95 = raw["b1"]["serial"]["p95"]
        result: dict[str, Any] = {
            "mode": self.cfg.mode,
            "concurrency": self.cfg.concurrency,
            "throughput_ratio": ratio(n["throughput_per_s"], b0["throughput_per_s"]),
            "latency_p95_ratio": ratio(raw["latency"]["answer_to_delivered"]["p95"], b1_serial_p95),
            "latency_p95_ratio_loaded": ratio(
                n["answer_to_delivered"]["p95"], raw["b1"]["loaded"]["p95"]
            ),
            # Where the loaded answers' time went, stage by stage (from the histories sampled).
            "answer_path_ms_loaded": _p50_p95(hist.get("answer_path_ms_in_n", {})),
            # The same stages for the quiet answers (L), one at a time.
            "answer_path_ms_quiet": _p50_p95(hist.get("answer_path_ms_in_l", {})),
            # Beside the ratio to B1: the same answers against bare updates made right after
            # each of them (not the figure; the denominator's drift made visible).
            "latency_p95_ratio_interleaved": ratio(
                raw["latency"]["answer_to_delivered"]["p95"],
                raw["latency"]["b1_interleaved"]["p95"],
            ),
            "b1_interleaved_p95_ms": raw["latency"]["b1_interleaved"]["p95"],
            "actions_per_notification": hist["actions_per_notification"],
            "events_per_notification": hist["events_per_notification"],
            "sql_statements_per_notification": n["worker_sql_statements_per"],
            "sql_transactions_per_notification": n["worker_sql_commits_per"],
            "starter_sql_statements_per_notification": n["starter_sql_statements_per"],
            "starter_sql_transactions_per_notification": n["starter_sql_commits_per"],
            # Issue 17: the whole happy path (2 admins), the starter's and the worker's.
            "sql_statements_per_happy_path": (
                n["worker_sql_statements_per"] + n["starter_sql_statements_per"]
            ),
            "sql_transactions_per_happy_path": (
                n["worker_sql_commits_per"] + n["starter_sql_commits_per"]
            ),
            # The warm-up's notifications, among them every merchant's first (which also
            # creates its admins' conversations): not the happy path, shown beside it.
            "warmup_sql_transactions_per_notification": (
                raw["warmup"]["worker_sql_commits_per"] + raw["warmup"]["starter_sql_commits_per"]
                if "warmup" in raw
                else None
            ),
            "worker_cpu_ms_per_notification": n["worker_cpu_ms_per"],
            # The worker's CPU for one B0 workflow, to scale the figure above.
            "b0_worker_cpu_ms": b0["worker_cpu_ms_per"],
            # Of the worker's CPU per notification, the share in the garbage collector.
            "worker_gc_ms_per_notification": n["worker_gc_ms_per"],
            "server_cpu_ms_per_notification": n["server_cpu_ms_per"],
            "worker_rss_mb_10k_open": op["worker_rss_mb_open"],
            "open_notifications": op["opened"],
            "lost": raw["verify"]["lost"],
            "duplicates": raw["verify"]["duplicates"],
            "b0_workflows_per_s": b0["throughput_per_s"],
            "n_notifications_per_s": n["throughput_per_s"],
            "b1_p50_ms": raw["b1"]["serial"]["p50"],
            "b1_p95_ms": b1_serial_p95,
            "b1_p99_ms": raw["b1"]["serial"]["p99"],
            "answer_to_delivered_p50_ms": raw["latency"]["answer_to_delivered"]["p50"],
            "answer_to_delivered_p95_ms": raw["latency"]["answer_to_delivered"]["p95"],
            "answer_to_delivered_p99_ms": raw["latency"]["answer_to_delivered"]["p99"],
            "loaded_b1_p95_ms": raw["b1"]["loaded"]["p95"],
            "loaded_answer_to_delivered_p95_ms": n["answer_to_delivered"]["p95"],
            **fanout_figures(raw["fanout"]),
        }
        for name, phase in (("b0_workflow", b0), ("notification", n)):
            parts = {
                "worker": phase["worker_cpu_ms_per"],
                "temporal_server": phase["server_cpu_ms_per"],
                "postgres": phase["postgres_cpu_ms_per"],
                "driver_and_fakes": phase["driver_cpu_ms_per"],
            }
            parts["total"] = sum(v for v in parts.values() if v is not None)
            parts["machine_cpu_utilization"] = phase["machine_cpu_utilization"]
            parts["foreign_cpu_share"] = phase["foreign_cpu_share"]
            result[f"cpu_ms_per_{name}"] = parts
        # On a saturated machine throughput is CPU-bound: the ratio of the CPU a B0 workflow
        # and a notification cost (all processes) predicts N/B0.
        result["cpu_predicted_throughput_ratio"] = ratio(
            result["cpu_ms_per_b0_workflow"]["total"], result["cpu_ms_per_notification"]["total"]
        )
        result["targets_met"] = {key: target_met(key, result.get(key)) for key in TARGETS}
        foreign = max(
            (result[k].get("foreign_cpu_share") or 0.0)
            for k in ("cpu_ms_per_b0_workflow", "cpu_ms_per_notification")
        )
        if foreign > 0.1:
            self.notes.append(
                f"up to {foreign:.0%} of the machine's busy CPU went to other processes during "
                "B0/N: the figures are skewed; run again on a quiet machine"
            )
        if self.errors:
            self.notes.append(
                "errors: " + ", ".join(f"{k} ×{v}" for k, v in self.errors.most_common())
            )
        result["notes"] = self.notes
        result["config"] = asdict(self.cfg)
        result["environment"] = environment(self.database)
        result["errors"] = {"counts": dict(self.errors), "examples": self.error_examples}
        result["raw"] = raw
        return result


def _p50_p95(stages: dict[str, Any]) -> dict[str, dict[str, float]]:
    """An answer's stages (bench.answer_path.summarize), p50 and p95 of each."""
    return {
        name: {q: stats[q] for q in ("p50", "p95")}
        for name, stats in stages.items()
        if isinstance(stats, dict)
    }


def environment(database: Database) -> dict[str, Any]:
    import platform

    import temporalio

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "temporalio": temporalio.__version__,
        "cpus": os.cpu_count(),
        "loadavg_at_end": load,
        "database": database.dialect,
        "database_note": database.note,
        "platform": platform.platform(),
    }
