"""``python -m bench.replay``: the workflow side of a notification alone — the worker's CPU to
create a sandboxed NotificationWorkflow and run its workflow tasks — by replaying a recorded
happy-path history (``tests/replay/histories``) many times with the SDK's Replayer. No server,
database or activity runs, so a change to the workflow module or the sandbox's work is measured
without the full benchmark's noise. Prints the CPU per replayed notification of each round (the
lowest is the least disturbed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from notifyflow import payload_passes, workflow_code_cache
from notifyflow.workflows.notification import NotificationWorkflow

log = logging.getLogger("bench.replay")

HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "replay" / "histories"


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def replay(
    history: WorkflowHistory, count: int, rounds: int, *, sdk_passes: bool = False
) -> list[float]:
    """CPU ms per replayed notification, one figure per round of ``count`` replays."""
    # As the worker runs it: the workflow module compiled once per process, and no payload
    # passes without a codec (``sdk_passes``: the SDK's, to measure what skipping them saves).
    workflow_code_cache.install([NotificationWorkflow])
    if not sdk_passes:
        payload_passes.install()
    replayer = Replayer(
        workflows=[NotificationWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_code_cache.sandboxed_runner(),
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for i in range(count):
            yield WorkflowHistory(f"{history.workflow_id}-{i}", history.events)

    figures = []
    for _ in range(rounds):
        cpu0, wall0 = _cpu_s(), time.perf_counter()
        async with replayer.workflow_replay_iterator(histories()) as results:
            async for result in results:
                if result.replay_failure is not None:
                    raise result.replay_failure
        figures.append((_cpu_s() - cpu0) * 1000 / count)
        log.info(
            "%d replays: %.3f ms CPU, %.3f ms wall per notification",
            count,
            figures[-1],
            (time.perf_counter() - wall0) * 1000 / count,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--history", default="question_answered_free_form", help="file stem")
    parser.add_argument("--count", type=int, default=400, help="replays per round (400)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument(
        "--sdk-passes",
        action="store_true",
        help="keep the SDK's payload passes (the worker skips them without a codec)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = HISTORIES / f"{args.history}.json"
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    figures = asyncio.run(replay(history, args.count, args.rounds, sdk_passes=args.sdk_passes))
    log.info("lowest: %.3f ms CPU per replayed notification (%s)", min(figures), path.name)


if __name__ == "__main__":
    main()
