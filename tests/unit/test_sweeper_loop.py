"""The worker's sweep loop keeps the operator's period and grace
(NOTIFYFLOW_SWEEP_EVERY_SECONDS, NOTIFYFLOW_SWEEP_GRACE_SECONDS), for notifications and answer
corrections alike, and stops when told."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from notifyflow import sweeper
from notifyflow.config import Settings


async def test_the_loop_sweeps_at_the_configured_period_with_the_configured_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, float, timedelta]] = []
    loop = asyncio.get_running_loop()

    def recorder(name: str) -> Any:
        async def record(*_args: Any, grace: timedelta, **_kwargs: Any) -> int:
            calls.append((name, loop.time(), grace))
            return 0

        return record

    monkeypatch.setattr(sweeper, "sweep_once", recorder("notifications"))
    monkeypatch.setattr(sweeper, "sweep_corrections", recorder("corrections"))
    settings = Settings(NOTIFYFLOW_SWEEP_EVERY_SECONDS=0.1, NOTIFYFLOW_SWEEP_GRACE_SECONDS=3.5)
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run_sweeper(None, None, settings, stop))  # type: ignore[arg-type]
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(task, 2)

    ticks = [t for name, t, _ in calls if name == "notifications"]
    # About ten; wide bounds for a busy machine. The default period (10 s) would give one, a
    # loop that did not wait hundreds.
    assert 3 <= len(ticks) <= 13, f"{len(ticks)} sweeps in 1 s at one per 0.1 s"
    assert {name for name, _, _ in calls} == {"notifications", "corrections"}
    assert {grace for _, _, grace in calls} == {timedelta(seconds=3.5)}
