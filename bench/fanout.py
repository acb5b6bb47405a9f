"""The fan-out series (issue 17): how the open of a notification scales with the number of
admins it is sent to.

For each size K (1, 2, 5, 20 admins) the bench builds one merchant with K admins, like the
other shops (the tests' ``make_shop``), and runs its notifications one at a time through the
real starter. Each is timed from just before ``request_notification`` to the moment the fake
Twilio accepted the last of its K request messages, and the worker's counters are read just
before the request and again once the workflow waits for its answer (its reminder timer is
started: the open is over), so the statements counted are those of that open and nothing else.
Then the notification is answered by the first admin and the bench waits for the customer's
message and the workflow's end before opening the next: every notification of the series ends
``delivered`` and is part of the run's lost/duplicates verification, and no answer's work
overlaps the next open's window.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.report import summary

if TYPE_CHECKING:
    from bench.runner import Bench

DEFAULT_SIZES = (1, 2, 5, 20)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"1,2,5,20"`` → (1, 2, 5, 20): distinct, ascending, each at least 1."""
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise ValueError("fan-out sizes are admin counts of at least 1, e.g. 1,2,5,20")
    return tuple(sizes)


def _statement_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> Counter[str]:
    return Counter(
        {
            text: int(v["count"] - before.get(text, {}).get("count", 0))
            for text, v in after.items()
            if v["count"] > before.get(text, {}).get("count", 0)
        }
    )


async def run_fanout(bench: Bench) -> dict[str, Any]:
    """The series for every size; returns ``raw.fanout`` (keys: the sizes as strings)."""
    cfg = bench.cfg
    count = cfg.fanout
    out: dict[str, Any] = {}
    bench.log(
        f"fan-out: {count} notifications one at a time for each of "
        + ", ".join(str(k) for k in cfg.fanout_sizes)
        + " admins"
    )
    with bench.progress() as progress:
        for size in cfg.fanout_sizes:
            shop = bench.fanout_shops[size]
            task = progress.add_task(f"fan-out, {size} admins", total=count)
            seconds: list[float] = []
            statements: list[float] = []
            commits: list[float] = []
            cpu_ms: list[float] = []
            starter_statements: list[float] = []
            by_text: Counter[str] = Counter()
            ids: list[int] = []
            errors = 0
            for j in range(count):
                try:
                    table0 = (await bench.worker.call("statements"))["statements"]
                    w0 = await bench.worker.call("snapshot")
                    s0 = bench.starter_sql.snapshot()
                    t0 = time.time()
                    n = await bench.request(j, shop)
                    ids.append(n)
                    s1 = bench.starter_sql.snapshot()
                    await bench.tracker.wait_notified(n, cfg.op_timeout)
                    at = bench.tracker.get(n).notified_at
                    await bench.settled(n)
                    w1 = await bench.worker.call("snapshot")
                    table1 = (await bench.worker.call("statements"))["statements"]
                    assert at is not None
                    seconds.append(at - t0)
                    statements.append(w1["sql"]["statements"] - w0["sql"]["statements"])
                    commits.append(w1["sql"]["commits"] - w0["sql"]["commits"])
                    cpu_ms.append(w1["cpu_ms"] - w0["cpu_ms"])
                    starter_statements.append(s1["statements"] - s0["statements"])
                    by_text.update(_statement_delta(table0, table1))
                    # Answered afterwards, outside the measured window, and finished before
                    # the next open.
                    await bench.answer(j, n, shop)
                    await bench.tracker.wait_delivered(n, cfg.op_timeout)
                    await bench.completed(n)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors += 1
                    bench._error(f"fan-out {size}", exc)
                progress.advance(task)
            done = max(len(statements), 1)
            out[str(size)] = {
                "admins": size,
                "count": len(seconds),
                "errors": errors,
                "notification_ids": ids,
                "request_to_all_admins_s": summary(seconds),
                "worker_sql_statements_per": sum(statements) / done if statements else None,
                # The first open of a merchant also creates its admins' conversations: the
                # median is the steady state.
                "worker_sql_statements_p50": summary(statements)["p50"],
                "worker_sql_commits_per": sum(commits) / done if commits else None,
                "worker_cpu_ms_per": sum(cpu_ms) / done if cpu_ms else None,
                "starter_sql_statements_per": (
                    sum(starter_statements) / done if starter_statements else None
                ),
                "top_statements": [
                    {"per_notification": c / done, "sql": text[:240]}
                    for text, c in by_text.most_common(15)
                ],
                "samples": {
                    "request_to_all_admins_s": seconds,
                    "worker_sql_statements": statements,
                    "worker_sql_commits": commits,
                    "worker_cpu_ms": cpu_ms,
                },
            }
    return out


def fanout_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """The headline keys from ``raw.fanout``."""
    return {
        "fanout_seconds_by_admins": {
            size: s["request_to_all_admins_s"]["p50"] for size, s in raw.items()
        },
        "fanout_statements_by_admins": {
            size: s["worker_sql_statements_per"] for size, s in raw.items()
        },
    }
