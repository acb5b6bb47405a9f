"""The worker moves start-up's objects out of the garbage collector's view once it is built
(notifyflow.worker.freeze_startup_objects): start-up's garbage is collected first, and what the
worker allocates afterwards is collected as before."""

from __future__ import annotations

import gc
import weakref

from notifyflow.worker import freeze_startup_objects


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_start_up_garbage_is_collected_not_frozen_and_later_garbage_still_collected() -> None:
    before = _Node()
    gone_before = weakref.ref(before)
    del before
    try:
        frozen = freeze_startup_objects()
        assert gone_before() is None
        assert frozen == gc.get_freeze_count() > 0
        kept = _Node()  # alive at the next freeze-free collection: not garbage
        after = _Node()
        gone_after = weakref.ref(after)
        del after
        gc.collect()
        assert gone_after() is None
        assert kept.me is kept
    finally:
        gc.unfreeze()
