"""The live event stream publishes a timeline only when no commit overtook its reads: a listener
resumes by position, so a timeline missing an entry that later appears earlier in time would
make it skip that entry and see the next one twice (the e2e stream test caught it on CI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifyflow.api.event_stream import READ_TRIES, TimelineHub, _Watched
from notifyflow.models.views import TimelineEntry

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
N = 7
POLLED = ("waiting", T0, 2, 0)
COMMITTED = ("delivered", T0 + timedelta(seconds=5), 4, 1)
# Read while the answer committed: its sends, not the answer itself.
STALE = ("requested", "sent request", "sent answer")
WHOLE = ("requested", "sent request", "answer accepted", "sent answer")


def _entries(events: tuple[str, ...]) -> list[TimelineEntry]:
    return [
        TimelineEntry(at=T0 + timedelta(seconds=i), event=e, detail="")
        for i, e in enumerate(events)
    ]


class _Database:
    """What the hub reads, in order: versions (one per query) and timelines (one per read)."""

    def __init__(self, versions: list[tuple[Any, ...]], timelines: list[tuple[str, ...]]):
        self.versions, self.timelines = versions, timelines
        self.version_queries = self.timeline_reads = 0

    async def version(self, ids: list[int]) -> dict[int, tuple[Any, ...]]:
        value = self.versions[min(self.version_queries, len(self.versions) - 1)]
        self.version_queries += 1
        return dict.fromkeys(ids, value)

    async def read(self, _n: int) -> list[TimelineEntry]:
        events = self.timelines[min(self.timeline_reads, len(self.timelines) - 1)]
        self.timeline_reads += 1
        return _entries(events)


def _hub(monkeypatch: pytest.MonkeyPatch, database: _Database) -> TimelineHub:
    hub = TimelineHub(db=None)  # type: ignore[arg-type]  # every read is replaced below
    monkeypatch.setattr(hub, "_version", database.version)
    monkeypatch.setattr(hub, "_read", database.read)
    return hub


async def test_a_poll_that_read_while_the_answer_committed_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Poll: changed (POLLED), read STALE, checked again: COMMITTED: overtaken.
    database = _Database([POLLED, COMMITTED, COMMITTED, COMMITTED], [STALE, WHOLE])
    hub = _hub(monkeypatch, database)
    watched = hub._watched[N] = _Watched(timeline=_entries(("requested",)), version=("old",))
    await hub._poll()
    assert [e.event for e in watched.timeline] == ["requested"]  # what listeners had
    assert database.version_queries == 2  # one for all watched, one to check what was read
    # The next round reads it again, under the version it now has: the whole timeline.
    await hub._poll()
    assert [e.event for e in watched.timeline] == list(WHOLE)
    assert watched.version == COMMITTED
    assert watched.terminal


async def test_a_new_listener_s_read_overtaken_by_a_commit_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    database = _Database([POLLED, COMMITTED, COMMITTED], [STALE, WHOLE])
    hub = _hub(monkeypatch, database)
    watched = _Watched()
    await hub._load(N, watched)
    assert database.timeline_reads == 2
    assert [e.event for e in watched.timeline] == list(WHOLE)
    assert watched.version == COMMITTED


async def test_a_read_overtaken_every_time_is_left_to_the_poller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = [("waiting", T0 + timedelta(seconds=i), i, 0) for i in range(READ_TRIES + 2)]
    database = _Database(versions, [STALE])
    hub = _hub(monkeypatch, database)
    watched = _Watched()
    await hub._load(N, watched)
    assert database.timeline_reads == READ_TRIES
    assert watched.timeline == []  # nothing published
    assert watched.version == ()  # the poller's next round differs from it and reads again
