"""The floor: B0's trivial workflow with one no-op activity, and B1's waiting workflow whose
update returns at once. Registered in the same Worker (same task queue, same settings) as
NotificationWorkflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
async def noop(value: int) -> int:
    return value


@workflow.defn(name="BenchNoopWorkflow")
class NoopWorkflow:
    """B0: start, one activity, complete."""

    @workflow.run
    async def run(self, value: int) -> int:
        return await workflow.execute_activity(
            noop, value, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="BenchWaitingWorkflow")
class WaitingWorkflow:
    """B1: waits until told to finish; ``ping`` is the bare update whose round trip is timed."""

    def __init__(self) -> None:
        self._done = False
        self._pings = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self._done)
        return self._pings

    @workflow.update(name="ping")
    def ping(self, value: int) -> int:
        self._pings += 1
        return value

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self._done = True


WORKFLOWS: list[type] = [NoopWorkflow, WaitingWorkflow]
ACTIVITIES = [noop]
