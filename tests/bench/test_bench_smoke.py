"""The benchmark keeps working: a tiny run of ``python -m bench`` in this process.

No timing is asserted; the figures only have to be there and make sense.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.__main__ import main

from tests.fixtures.database import database_choice

REQUIRED_KEYS = (
    "throughput_ratio",
    "latency_p95_ratio",
    "actions_per_notification",
    "events_per_notification",
    "sql_statements_per_notification",
    "sql_transactions_per_notification",
    "worker_cpu_ms_per_notification",
    "worker_rss_mb_10k_open",
    "open_notifications",
    "lost",
    "duplicates",
    # Issue 17.
    "sql_statements_per_happy_path",
    "sql_transactions_per_happy_path",
    "b0_worker_cpu_ms",
    "latency_p95_ratio_loaded",
    "fanout_seconds_by_admins",
    "fanout_statements_by_admins",
    # The quiet latency against bare updates interleaved with the answers.
    "latency_p95_ratio_interleaved",
    "b1_interleaved_p95_ms",
    # The worker's CPU in the garbage collector (py-spy spreads it over other frames).
    "worker_gc_ms_per_notification",
)
FANOUT_SIZES = ("1", "2", "5", "20")


def _database_args(tmp_path: Path) -> list[str]:
    """The test run's database choice: its URL when it has one, SQLite when the run uses
    SQLite, else the bench's own fresh PostgreSQL database."""
    choice = database_choice()
    if choice.url:
        return ["--database-url", choice.url]
    if choice.dialect == "sqlite":
        return ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"]
    return []


@pytest.mark.timeout(120)
def test_tiny_bench_run_reports_every_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "--json",
            "--output",
            str(out),
            "--b0",
            "5",
            "--b1",
            "5",
            "--notifications",
            "5",
            "--latency-samples",
            "3",
            "--open",
            "5",
            "--merchants",
            "3",
            "--warmup",
            "2",
            "--history-samples",
            "3",
            "--concurrency",
            "4",
            "--open-concurrency",
            "4",
            "--fanout",
            "2",
            *_database_args(tmp_path),
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    printed = json.loads(stdout)  # one JSON object and nothing else on stdout
    written = json.loads(out.read_text())
    assert printed["throughput_ratio"] == written["throughput_ratio"]
    for key in REQUIRED_KEYS:
        assert key in written, key
    assert written["lost"] == 0
    assert written["duplicates"] == 0
    assert written["open_notifications"] == 5
    for key in ("actions_per_notification", "events_per_notification"):
        assert isinstance(written[key], int | float) and written[key] > 0, key
    assert written["sql_statements_per_notification"] > 0
    # The collector's share is part of the worker's CPU, counted per generation.
    in_gc = written["worker_gc_ms_per_notification"]
    assert 0 <= in_gc <= written["worker_cpu_ms_per_notification"]
    collections = written["raw"]["n"]["worker_gc_collections"]
    assert len(collections) == 3 and all(isinstance(c, int) and c >= 0 for c in collections)
    assert written["raw"]["verify"]["requested"] == written["raw"]["verify"]["delivered"]
    # Every key of the targets table is reported and judged.
    assert set(written["targets_met"]) >= {
        "sql_statements_per_happy_path",
        "sql_transactions_per_happy_path",
        "worker_cpu_ms_per_notification",
        "throughput_ratio",
        "latency_p95_ratio",
        "latency_p95_ratio_loaded",
        "worker_rss_mb_10k_open",
        "actions_per_notification",
        "events_per_notification",
    }
    assert written["sql_statements_per_happy_path"] > written["sql_statements_per_notification"]
    # The warm-up reached every merchant once (their admins' first contact), more than asked.
    assert written["raw"]["warmup"]["count"] == 3
    assert written["warmup_sql_transactions_per_notification"] > 0
    # One bare update beside each answer timed one at a time.
    latency = written["raw"]["latency"]
    assert latency["b1_interleaved"]["count"] == latency["answer_to_delivered"]["count"] > 0
    # Each quiet answer split into its stages, read from its history.
    quiet = written["raw"]["history"]["answer_path_ms_in_l"]
    assert quiet["activity_to_delivered"]["count"] == latency["answer_to_delivered"]["count"]
    assert written["answer_path_ms_quiet"]["task"]["p50"] > 0
    # The fan-out series: every size ran, each notification reached all its admins and was
    # delivered afterwards (it counts in the verification above).
    fanout = written["raw"]["fanout"]
    assert sorted(fanout, key=int) == list(FANOUT_SIZES)
    assert sorted(written["fanout_seconds_by_admins"], key=int) == list(FANOUT_SIZES)
    for size in FANOUT_SIZES:
        series = fanout[size]
        assert series["count"] > 0 and series["errors"] == 0, size
        assert len(series["samples"]["request_to_all_admins_s"]) == series["count"], size
        assert written["fanout_seconds_by_admins"][size] > 0, size
        assert written["fanout_statements_by_admins"][size] > 0, size
    fanout_phase = written["raw"]["verify"]["fanout_phase"]
    assert fanout_phase["requested"] == fanout_phase["delivered"] == 2 * len(FANOUT_SIZES)
