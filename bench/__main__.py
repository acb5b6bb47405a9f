"""``python -m bench`` / ``notifyflow bench``: see docs/performance.md.

Exit codes: 0 when the run completed (targets met or not: the figures say), 1 when it could not
run or lost/duplicated a notification, 2 on bad arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

# name: (full, quick)
COUNTS = {
    "b0_workflows": (2000, 300),
    "b1_updates": (1000, 200),
    "notifications": (1000, 200),
    "latency_samples": (200, 50),
    "open_notifications": (10_000, 1_000),
    "merchants": (100, 20),
    "warmup": (32, 32),
    "fanout": (40, 10),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="notifyflow bench",
        description=(
            "Start a Temporal dev server, a fresh PostgreSQL database, a fake Twilio and the "
            "worker; measure Temporal's floor (B0, B1) and the notification lifecycle (N) in "
            "one run; print a table, write a JSON file and a latency plot."
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced run: 200 + 50 notifications, 1,000 open (< 3 min on 2 cores)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout and nothing else (progress on stderr)",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="JSON file (default bench-results/bench-<timestamp>.json); the PNG plot "
        "goes next to it",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--concurrency", type=int, default=32, help="in flight in B0, B1, N (32)")
    p.add_argument("--b0", dest="b0_workflows", type=int, help="B0 workflows (2000; quick 300)")
    p.add_argument("--b1", dest="b1_updates", type=int, help="B1 updates (1000; quick 200)")
    p.add_argument("--notifications", "-n", type=int, help="N lifecycles (1000; quick 200)")
    p.add_argument(
        "--latency-samples", type=int, help="answers timed one at a time (200; quick 50)"
    )
    p.add_argument(
        "--open",
        dest="open_notifications",
        type=int,
        help="notifications open at once (10000; quick 1000)",
    )
    p.add_argument(
        "--open-concurrency",
        type=int,
        default=64,
        help="requests/answers in flight in the open-load phase (64)",
    )
    p.add_argument("--merchants", type=int, help="merchants (shops) to spread over (100; quick 20)")
    p.add_argument(
        "--warmup",
        type=int,
        help="warm-up workflows and notifications (32; at least one notification per merchant)",
    )
    p.add_argument(
        "--fanout",
        type=int,
        help="fan-out series: notifications one at a time per merchant size (40; quick 10)",
    )
    p.add_argument(
        "--fanout-sizes",
        default="1,2,5,20",
        metavar="K,K,…",
        help="fan-out series: the merchants' admin counts (1,2,5,20)",
    )
    p.add_argument(
        "--history-samples",
        type=int,
        default=100,
        help="N histories read for events/actions and the loaded answer's stages (100)",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="use this database as it is (default: a fresh one on 127.0.0.1:5432, "
        "dropped at the end; SQLite if no PostgreSQL answers)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the worker with py-spy during N (needs py-spy)",
    )
    p.add_argument(
        "--op-timeout", type=float, default=120.0, help="bound on any single wait, seconds (120)"
    )
    w = p.add_argument_group(
        "worker settings, the same for every phase (default: what the product's build_worker "
        "sets, else the SDK's defaults)"
    )
    w.add_argument(
        "--max-cached-workflows",
        type=int,
        default=None,
        help="sticky cache size (default: the product's, i.e. the SDK's 1,000)",
    )
    w.add_argument("--max-concurrent-workflow-tasks", type=int, default=None)
    w.add_argument("--max-concurrent-activities", type=int, default=None)
    w.add_argument("--max-concurrent-local-activities", type=int, default=None)
    w.add_argument(
        "--workflow-task-pollers",
        default=None,
        help="a number, or 'auto' for the SDK's autoscaling pollers",
    )
    w.add_argument(
        "--activity-task-pollers",
        default=None,
        help="a number, or 'auto' for the SDK's autoscaling pollers",
    )
    w.add_argument(
        "--workflow-runner",
        choices=("sandboxed", "unsandboxed"),
        default=None,
        help="an experiment: the workflow runner (default: the product's)",
    )
    w.add_argument(
        "--worker-engine-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="an experiment: override the worker engine's arguments, e.g. "
        "'{\"pool_pre_ping\": false}'",
    )
    p.add_argument(
        "--open-floor",
        action="store_true",
        help="also measure the SDK's floor: as many bare waiting workflows open",
    )
    p.add_argument(
        "--settle",
        choices=("history", "none"),
        default="history",
        help="before an answer, wait until the workflow waits for it (history: long-poll its "
        "history, the default) or answer as soon as the admins' messages land (none)",
    )
    args = p.parse_args(argv)
    for name, (full, quick) in COUNTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.concurrency < 1 or args.open_concurrency < 1:
        p.error("concurrency must be at least 1")
    from bench.fanout import parse_sizes

    try:
        args.fanout_sizes = parse_sizes(args.fanout_sizes)
    except ValueError as exc:
        p.error(f"--fanout-sizes: {exc}")
    return args


async def _run(bench: Any) -> dict[str, Any]:
    """``bench.run()``, cancelled by SIGINT or SIGTERM (also when started in the background,
    where SIGINT is ignored by default) so that everything it started is stopped."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        if not received:  # a second signal must not cut the clean-up short
            received.append(signum)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        result: dict[str, Any] = await bench.run()
        return result
    except asyncio.CancelledError:
        if received:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    from bench.infra import BenchError
    from bench.report import plot, print_table, write_json
    from bench.runner import Bench, BenchConfig

    width = None if sys.stdout.isatty() else 110
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 110)
    out = Console(stderr=args.json, width=width)
    cfg = BenchConfig(
        mode="quick" if args.quick else "full",
        concurrency=args.concurrency,
        b0_workflows=args.b0_workflows,
        b1_updates=args.b1_updates,
        notifications=args.notifications,
        latency_samples=args.latency_samples,
        open_notifications=args.open_notifications,
        open_concurrency=args.open_concurrency,
        merchants=args.merchants,
        history_samples=args.history_samples,
        warmup=args.warmup,
        fanout=args.fanout,
        fanout_sizes=args.fanout_sizes,
        database_url=args.database_url,
        profile=args.profile,
        max_cached_workflows=args.max_cached_workflows,
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
        max_concurrent_activities=args.max_concurrent_activities,
        max_concurrent_local_activities=args.max_concurrent_local_activities,
        workflow_task_pollers=args.workflow_task_pollers,
        activity_task_pollers=args.activity_task_pollers,
        workflow_runner=args.workflow_runner,
        engine_options=args.worker_engine_options,
        open_floor=args.open_floor,
        settle=args.settle,
        op_timeout=args.op_timeout,
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = args.output or Path("bench-results") / f"bench-{stamp}.json"
    bench = Bench(cfg, err)
    t0 = time.perf_counter()
    try:
        result = asyncio.run(_run(bench))
    except KeyboardInterrupt:
        err.print("[red]interrupted: everything the benchmark started has been stopped[/]")
        return 130
    except BenchError as exc:
        err.print(f"[red]bench failed:[/] {exc}")
        return 1
    result["wall_seconds"] = time.perf_counter() - t0
    result["json_path"] = str(json_path)
    if not args.no_plot:
        png = plot(result, bench.samples, json_path.with_suffix(".png"))
        result["plot_path"] = str(png) if png else None
        if png is None:
            result["notes"].append("no plot: matplotlib is not installed (pip install '.[bench]')")
    write_json(result, json_path)
    print_table(result, out)
    out.print(
        f"JSON: {json_path}"
        + (f"  plot: {result.get('plot_path')}" if result.get("plot_path") else "")
    )
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        sys.stdout.flush()
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
