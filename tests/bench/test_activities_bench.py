"""``python -m bench.activities`` keeps working: a tiny run against the test run's database.

No timing is asserted; every figure has to be there, and the run itself checks that the fake
accepted exactly the messages of the notifications it opened and answered."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bench.activities import main

from tests.fixtures.database import database_choice


@pytest.mark.timeout(120)
def test_tiny_activities_bench_reports_each_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    choice = database_choice()
    args = ["--count", "3", "--rounds", "2", "--json"]
    if choice.url:
        args += ["--database-url", choice.url]
    elif choice.dialect == "sqlite":
        args += ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"]
    result = main(args)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    assert result["count"] == 3 and len(result["rounds"]) == 2
    for r in result["rounds"]:
        assert r["open_ms"] > 0 and r["deliver_ms"] > 0
        assert math.isclose(r["total_ms"], r["open_ms"] + r["deliver_ms"], abs_tol=0.002)
        # The CPU is part of the wall-clock time, which also waits for the database and
        # the fake.
        assert r["wall_ms"] > r["total_ms"]
    assert result["lowest_total_ms"] == min(r["total_ms"] for r in result["rounds"])
