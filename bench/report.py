"""Figures out: percentiles, the terminal table, the JSON file, the latency plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Issue 17's targets ("target this issue"): key -> (comparison, bound). The happy path is one
# notification of the N phase (a merchant with 2 admins); the RSS bound is for 10,000 open (the
# full run; --quick opens 1,000 and is compared with the same bound).
TARGETS: dict[str, tuple[str, float]] = {
    "sql_statements_per_happy_path": ("<=", 12),
    "sql_transactions_per_happy_path": ("<=", 5),
    "worker_cpu_ms_per_notification": ("<=", 30.0),
    "throughput_ratio": (">=", 0.35),
    "latency_p95_ratio": ("<=", 2.5),
    "latency_p95_ratio_loaded": ("<=", 4.0),
    "worker_rss_mb_10k_open": ("<=", 250.0),
    "actions_per_notification": ("<=", 6),
    "events_per_notification": ("<=", 25),
    "lost": ("==", 0),
    "duplicates": ("==", 0),
}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "mean": (sum(values) / len(values)) if values else None,
        "min": min(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def target_met(key: str, value: Any) -> bool | None:
    if key not in TARGETS or value is None:
        return None
    op, bound = TARGETS[key]
    if op == ">=":
        return bool(value >= bound)
    if op == "<=":
        return bool(value <= bound)
    return bool(value == bound)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


# An answer's stages (bench.answer_path.STAGES), as the table names them.
STAGE_LABELS = {
    "to_task_started": "answer sent → its workflow task taken",
    "task": "that workflow task in the worker",
    "to_activity_started": "→ delivery activity started",
    "activity_to_delivered": "activity → customer's message at the provider",
    "delivered_to_completed": "customer's message → activity completed",
}


def _stage_rows(table: Table, stages: dict[str, dict[str, float]] | None) -> None:
    """An answer's stages (bench.answer_path), p50 / p95, under the ratio they explain."""
    for stage, stats in (stages or {}).items():
        table.add_row(
            f"    {STAGE_LABELS.get(stage, stage)} p50/p95",
            f"{_fmt(stats['p50'], 1)} / {_fmt(stats['p95'], 1)} ms",
            "",
            "",
        )


def _lat(s: dict[str, Any] | None) -> str:
    if not s or not s.get("count"):
        return "—"
    return f"{_fmt(s['p50'], 1)} / {_fmt(s['p95'], 1)} / {_fmt(s['p99'], 1)} ms (n={s['count']})"


def print_table(result: dict[str, Any], console: Console) -> None:
    raw = result["raw"]
    table = Table(title=f"notifyflow bench ({result['mode']})", show_lines=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")

    def row(label: str, key: str | None, value: Any, digits: int = 2) -> None:
        target = ""
        mark = ""
        if key and key in TARGETS:
            op, bound = TARGETS[key]
            target = f"{op} {bound:g}"
            met = target_met(key, value)
            mark = "" if met is None else ("[green]✓[/]" if met else "[red]✗[/]")
        table.add_row(label, _fmt(value, digits), target, mark)

    b0, n = raw["b0"], raw["n"]
    row("B0 workflows/s", None, b0.get("throughput_per_s"))
    row("N notifications/s", None, n.get("throughput_per_s"))
    row("N/B0 throughput", "throughput_ratio", result["throughput_ratio"])
    table.add_section()
    table.add_row("B1 update round trip p50/p95/p99", _lat(raw["b1"].get("serial")), "", "")
    table.add_row(
        "N answer→delivered p50/p95/p99", _lat(raw["latency"].get("answer_to_delivered")), "", ""
    )
    row("answer→delivered p95 / B1 p95", "latency_p95_ratio", result["latency_p95_ratio"])
    _stage_rows(table, result.get("answer_path_ms_quiet"))
    table.add_row(
        "  bare update after each answer p50/p95/p99",
        _lat(raw["latency"].get("b1_interleaved")),
        "",
        "",
    )
    row(
        "  answer→delivered p95 / that p95",
        "latency_p95_ratio_interleaved",
        result.get("latency_p95_ratio_interleaved"),
    )
    table.add_row(
        f"B1 at concurrency {result['concurrency']}", _lat(raw["b1"].get("loaded")), "", ""
    )
    table.add_row(
        f"N answer→delivered at concurrency {result['concurrency']}",
        _lat(n.get("answer_to_delivered")),
        "",
        "",
    )
    row("  ratio of those p95s", "latency_p95_ratio_loaded", result.get("latency_p95_ratio_loaded"))
    _stage_rows(table, result.get("answer_path_ms_loaded"))
    table.add_section()
    row(
        "billable actions / notification",
        "actions_per_notification",
        result["actions_per_notification"],
    )
    row(
        "history events / notification",
        "events_per_notification",
        result["events_per_notification"],
    )
    row(
        "SQL statements / happy path (starter + worker)",
        "sql_statements_per_happy_path",
        result.get("sql_statements_per_happy_path"),
    )
    row(
        "SQL transactions / happy path (starter + worker)",
        "sql_transactions_per_happy_path",
        result.get("sql_transactions_per_happy_path"),
    )
    row(
        "  transactions / notification in the warm-up (every merchant's first contact)",
        None,
        result.get("warmup_sql_transactions_per_notification"),
    )
    row("  worker SQL statements / notification", None, result["sql_statements_per_notification"])
    row(
        "  worker SQL transactions / notification",
        None,
        result["sql_transactions_per_notification"],
    )
    row(
        "  worker SQL round trips / notification",
        None,
        n.get("worker_sql_round_trips_per"),
    )
    row(
        "  starter SQL statements / notification",
        None,
        result.get("starter_sql_statements_per_notification"),
    )
    row(
        "  starter SQL transactions / notification",
        None,
        result.get("starter_sql_transactions_per_notification"),
    )
    row(
        "worker CPU ms / notification",
        "worker_cpu_ms_per_notification",
        result["worker_cpu_ms_per_notification"],
    )
    row("  of which in the garbage collector", None, result.get("worker_gc_ms_per_notification"))
    row("  worker CPU ms / B0 workflow (for scale)", None, result.get("b0_worker_cpu_ms"))
    row("Temporal server CPU ms / notification", None, result.get("server_cpu_ms_per_notification"))
    for label, key in (
        ("B0 workflow", "cpu_ms_per_b0_workflow"),
        ("notification", "cpu_ms_per_notification"),
    ):
        cpu = result.get(key)
        if cpu:
            table.add_row(
                f"CPU ms / {label}: worker·server·pg·driver",
                " · ".join(
                    _fmt(cpu.get(k), 1)
                    for k in ("worker", "temporal_server", "postgres", "driver_and_fakes")
                )
                + f" = {_fmt(cpu.get('total'), 1)}",
                "",
                "",
            )
    row("B0 CPU / N CPU (predicts N/B0)", None, result.get("cpu_predicted_throughput_ratio"))

    fanout = raw.get("fanout") or {}
    if fanout:
        table.add_section()
        for size, series in fanout.items():
            s = series["request_to_all_admins_s"]
            table.add_row(
                f"fan-out {size} admins: request→all admins p50/p95 (n)",
                f"{_fmt(s['p50'], 3)} / {_fmt(s['p95'], 3)} s ({s['count']})",
                "",
                "",
            )
        for size, series in fanout.items():
            row(
                f"fan-out {size} admins: worker SQL statements / open",
                None,
                series["worker_sql_statements_per"],
                1,
            )

    table.add_section()
    row(
        f"worker RSS MB, {result['open_notifications']:,} open",
        "worker_rss_mb_10k_open",
        result["worker_rss_mb_10k_open"],
        1,
    )
    row("lost", "lost", result["lost"])
    row("duplicates", "duplicates", result["duplicates"])
    console.print(table)
    for note in result.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def plot(result: dict[str, Any], samples: dict[str, list[float]], path: Path) -> Path | None:
    """ECDFs of the update floor (B1) and answer→delivered (N), alone and under load."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    panels = [
        (
            "one at a time",
            [("B1 update round trip", "b1_serial"), ("N answer→delivered", "n_serial")],
        ),
        (
            f"{result['concurrency']} in flight",
            [("B1 update round trip", "b1_loaded"), ("N answer→delivered", "n_loaded")],
        ),
    ]
    for ax, (title, series) in zip(axes, panels, strict=True):
        for label, key in series:
            values = sorted(samples.get(key) or [])
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            p95 = percentile(values, 95)
            ax.step(values, ys, where="post", label=f"{label} (p95 {p95:.1f} ms)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("latency, ms (log)")
        ax.set_title(title)
        ax.axhline(0.95, color="grey", linewidth=0.6, linestyle=":")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("fraction of samples ≤ x")
    fig.suptitle(
        f"notifyflow bench ({result['mode']}): p95 ratio {_fmt(result['latency_p95_ratio'])}"
        f" one at a time, {_fmt(result.get('latency_p95_ratio_loaded'))} under load"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
