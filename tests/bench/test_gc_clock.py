"""The bench's garbage-collector clock counts what the collector did, per generation."""

from __future__ import annotations

import gc

from bench.instrument import GcClock


def test_gc_clock_counts_each_collection_by_generation() -> None:
    clock = GcClock().install()
    automatic = gc.isenabled()
    gc.disable()  # only the collections below: none triggered by the allocations meanwhile
    try:
        before = clock.snapshot()
        # Garbage with cycles, so the collections have something to find.
        for _ in range(1000):
            a: list[object] = []
            a.append(a)
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
        after = clock.snapshot()
    finally:
        clock.uninstall()
        if automatic:
            gc.enable()
    assert after["collections"] == [
        before["collections"][0] + 1,
        before["collections"][1],
        before["collections"][2] + 2,
    ]
    assert after["cpu_ms"] > before["cpu_ms"]


def test_gc_clock_installs_once_and_uninstalls() -> None:
    clock = GcClock()
    clock.install()
    clock.install()
    try:
        assert gc.callbacks.count(clock._callback) == 1
    finally:
        clock.uninstall()
    assert clock._callback not in gc.callbacks
