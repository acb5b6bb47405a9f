"""The live event stream publishes a timeline only when no commit overtook its reads: a listener
resumes by position, so a timeline missing an entry that later appears earlier in time would
make it skip that entry and see the next one twice (the e2e stream test caught it on CI)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifyflow.api import event_stream
from notifyflow.api.event_stream import POLL_EVERY, READ_TRIES, TimelineHub, _Watched
from notifyflow.db.types import utcnow
from notifyflow.models.views import TimelineEntry
from notifyflow.read_model import Timeline

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


def _as_read(entries: list[TimelineEntry], pending: tuple[int, ...] = ()) -> Timeline:
    """Written when they happened; ``pending``: the sends whose outcome is not written."""
    return Timeline(
        entries=entries,
        live=entries,
        written=[e.at for e in entries],
        pending=[i in pending for i in range(len(entries))],
    )


class _Database:
    """What the hub reads, in order: versions (one per query) and timelines (one per read)."""

    def __init__(self, versions: list[tuple[Any, ...]], timelines: list[tuple[str, ...]]):
        self.versions, self.timelines = versions, timelines
        self.version_queries = self.timeline_reads = 0

    async def version(self, ids: list[int]) -> dict[int, tuple[Any, ...]]:
        value = self.versions[min(self.version_queries, len(self.versions) - 1)]
        self.version_queries += 1
        return dict.fromkeys(ids, value)

    async def read(self, _n: int) -> Timeline:
        events = self.timelines[min(self.timeline_reads, len(self.timelines) - 1)]
        self.timeline_reads += 1
        return _as_read(_entries(events))


def _hub(
    monkeypatch: pytest.MonkeyPatch, database: _Database | _Live, every: timedelta = POLL_EVERY
) -> TimelineHub:
    hub = TimelineHub(db=None, every=every)  # type: ignore[arg-type]  # reads replaced below
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


# A send is recorded "pending" when it is claimed and gets its outcome a moment later; the
# stream sends each entry once, so one sent while pending would stay pending for its listener
# (the e2e stream test caught it on CI: the stream said "pending", the finished timeline "sent").


class _Live:
    """One notification as the hub reads it now; the test moves it on."""

    def __init__(self, version: tuple[Any, ...], timeline: Timeline) -> None:
        self.current, self.timeline = version, timeline
        self.queries = 0

    async def version(self, ids: list[int]) -> dict[int, tuple[Any, ...]]:
        self.queries += 1
        return dict.fromkeys(ids, self.current)

    async def read(self, _n: int) -> Timeline:
        return self.timeline


def _timeline(
    *lines: tuple[str, str], pending: tuple[int, ...] = (), at: datetime = T0
) -> Timeline:
    """Entries a millisecond apart from ``at`` (T0: long ago)."""
    entries = [
        TimelineEntry(at=at + timedelta(milliseconds=i), event=event, detail=detail)
        for i, (event, detail) in enumerate(lines)
    ]
    return _as_read(entries, pending)


def _lately() -> datetime:
    """Older than WRITE_MARGIN, younger than PENDING_HOLD."""
    return utcnow() - timedelta(seconds=5)


async def _listen(hub: TimelineHub, seen: list[tuple[int, str]]) -> None:
    async for message in hub.stream(N, -1):
        if message.startswith("id: "):
            head, _event, data = message.strip().split("\n")
            seen.append((int(head[4:]), json.loads(data[6:])["detail"]))


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never got there")


ASKED = [("requested", "user_question_request"), ("sent request", "to Admin 1: sent")]


async def test_a_send_is_streamed_once_its_outcome_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_stream, "SETTLE_AFTER", timedelta(milliseconds=50))
    at = _lately()
    live = _Live(
        ("answered", at, 2, 1, 1, 0, 0),
        _timeline(
            *ASKED,
            ("answer accepted", "by Admin 1"),
            ("sent answer", "to customer: pending"),
            pending=(3,),
            at=at,
        ),
    )
    hub = _hub(monkeypatch, live, every=timedelta(milliseconds=10))
    seen: list[tuple[int, str]] = []
    listener = asyncio.create_task(_listen(hub, seen))
    await _until(lambda: len(seen) == 3)
    queries = live.queries
    await _until(lambda: live.queries >= queries + 5)  # polled, unchanged
    assert [i for i, _ in seen] == [0, 1, 2]  # the pending send is held, not sent
    live.current = ("delivered", at, 2, 0, 1, 0, 0)
    live.timeline = _timeline(
        *ASKED,
        ("answer accepted", "by Admin 1"),
        ("sent answer", "to customer: sent"),
        ("delivered", "by direct"),
        at=at,
    )
    await asyncio.wait_for(listener, 5)
    assert seen[3:] == [(3, "to customer: sent"), (4, "by direct")]


async def test_the_stream_does_not_end_on_a_closure_notice_still_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Delivered, quiet for longer than SETTLE_AFTER, but the other admin's closure notice,
    # written after the terminal status, still waits for the provider's answer.
    monkeypatch.setattr(event_stream, "SETTLE_AFTER", timedelta(milliseconds=50))
    at = _lately()
    done = [*ASKED, ("delivered", "by direct")]
    live = _Live(
        ("delivered", at, 3, 1, 1, 0, 0),
        _timeline(*done, ("sent closure", "to Admin 2: pending"), pending=(3,), at=at),
    )
    hub = _hub(monkeypatch, live, every=timedelta(milliseconds=10))
    seen: list[tuple[int, str]] = []
    listener = asyncio.create_task(_listen(hub, seen))
    await _until(lambda: len(seen) == 3)
    queries = live.queries
    await _until(lambda: live.queries >= queries + 10)  # 100 ms: twice SETTLE_AFTER
    assert not listener.done() and len(seen) == 3
    live.current = ("delivered", at, 3, 0, 1, 0, 0)
    live.timeline = _timeline(*done, ("sent closure", "to Admin 2: sent"), at=at)
    await asyncio.wait_for(listener, 5)
    assert seen[3:] == [(3, "to Admin 2: sent")]


async def test_a_send_pending_for_long_is_streamed_as_it_stands_and_the_stream_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Closed long ago with a send a close cut off: nothing will write its outcome.
    live = _Live(
        ("closed", T0, 2, 1, 0, 0, 0),
        _timeline(*ASKED, ("sent request", "to Admin 2: pending"), ("closed", "ttl"), pending=(2,)),
    )
    hub = _hub(monkeypatch, live, every=timedelta(milliseconds=10))
    seen: list[tuple[int, str]] = []
    await asyncio.wait_for(_listen(hub, seen), 5)
    assert [detail for _, detail in seen][2:] == ["to Admin 2: pending", "ttl"]


async def test_an_entry_written_just_now_waits_a_round_then_comes_unasked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its neighbour written just before it may not have committed yet: it waits until it is
    # WRITE_MARGIN old, and the poller reads again although the notification did not change.
    monkeypatch.setattr(event_stream, "WRITE_MARGIN", timedelta(hours=1))
    now = utcnow()
    entries = [
        TimelineEntry(at=T0, event="requested", detail="question"),
        TimelineEntry(at=now, event="answer refused", detail="by Admin 2"),
    ]
    live = _Live(
        ("requested", now, 0, 0, 1, 0, 0),
        Timeline(entries=entries, live=entries, written=[T0, now], pending=[False, False]),
    )
    hub = _hub(monkeypatch, live, every=timedelta(milliseconds=10))
    seen: list[tuple[int, str]] = []
    listener = asyncio.create_task(_listen(hub, seen))
    await _until(lambda: len(seen) == 1)
    queries = live.queries
    await _until(lambda: live.queries >= queries + 5)
    assert seen == [(0, "question")]
    monkeypatch.setattr(event_stream, "WRITE_MARGIN", timedelta(0))  # an hour later
    await _until(lambda: len(seen) == 2)
    assert seen[1] == (1, "by Admin 2")
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


def test_a_read_that_brings_a_held_entry_unsettles_the_notification() -> None:
    # Settled (every listener's stream was ending), then a send is claimed (the CSAT ask): a
    # listener still attached, or one who joins now, waits for its outcome.
    hub = TimelineHub(db=None)  # type: ignore[arg-type]
    watched = _Watched(settled=True, terminal=True, quiet_since=T0, version=("delivered",))
    at = _lately()
    read = _timeline(*ASKED, ("sent csat", "to customer: pending"), pending=(2,), at=at)
    hub._publish(watched, read, ("delivered", at, 3, 1, 1, 0, 0), utcnow())
    assert not watched.settled and watched.held
    assert watched.final == 2
