"""An activity heartbeats while it runs (so a worker that dies mid-send is noticed within the
heartbeat timeout, not the whole start-to-close timeout) and stops when it ends."""

from __future__ import annotations

import asyncio
import dataclasses

from temporalio.testing import ActivityEnvironment

from notifyflow.activities.common import heartbeating


def _recording(*, local: bool = False) -> tuple[ActivityEnvironment, list[tuple[object, ...]]]:
    """An activity environment and the heartbeats it receives."""
    env = ActivityEnvironment()
    if local:
        env.info = dataclasses.replace(env.info, is_local=True)
    beats: list[tuple[object, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    return env, beats


async def test_a_running_activity_heartbeats_and_stops_when_it_ends() -> None:
    env, beats = _recording()

    async def slow() -> None:
        with heartbeating(every=0.02):
            await asyncio.sleep(0.3)

    await env.run(slow)
    during = len(beats)
    assert during >= 2, f"{during} heartbeats in 0.3 s at one per 0.02 s"
    await asyncio.sleep(0.1)
    assert len(beats) == during, "heartbeats went on after the activity ended"


async def test_an_activity_that_fails_stops_heartbeating() -> None:
    env, beats = _recording()

    async def fails() -> None:
        with heartbeating(every=0.02):
            await asyncio.sleep(0.05)
            raise RuntimeError("provider down")

    try:
        await env.run(fails)
    except RuntimeError:
        pass
    after = len(beats)
    await asyncio.sleep(0.1)
    assert len(beats) == after


async def test_a_local_activity_does_not_heartbeat() -> None:
    env, beats = _recording(local=True)

    async def local() -> None:
        with heartbeating(every=0.01):
            await asyncio.sleep(0.1)

    await env.run(local)
    assert beats == []
