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


def _entries(*events: str) -> list[TimelineEntry]:
    return [
        TimelineEntry(at=T0 + timedelta(seconds=i), event=e, detail="")
        for i, e in enumerate(events)
    ]


def _hub(
    monkeypatch: pytest.MonkeyPatch,
    timelines: list[list[TimelineEntry]],
    versions: list[tuple[Any, ...]],
) -> tuple[TimelineHub, list[int]]:
    hub = TimelineHub(db=None)  # type: ignore[arg-type]  # every read is replaced below
    reads: list[int] = []

    async def timeline(_db: object, _public: str) -> list[TimelineEntry]:
        reads.append(1)
        return timelines[min(len(reads), len(timelines)) - 1]

    async def version(ids: list[int]) -> dict[int, tuple[Any, ...]]:
        return {ids[0]: versions[min(len(reads), len(versions)) - 1]}

    monkeypatch.setattr("notifyflow.starter.notification_timeline", timeline)
    monkeypatch.setattr(hub, "_version", version)
    return hub, reads


async def test_a_timeline_read_while_the_answer_commits_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    polled = ("waiting", T0, 2, 0)
    committed = ("delivered", T0 + timedelta(seconds=5), 4, 1)
    # The first read saw the answer's sends but not the answer (committed in between).
    stale = _entries("requested", "sent request", "sent answer")
    whole = _entries("requested", "sent request", "answer accepted", "sent answer")
    hub, reads = _hub(monkeypatch, [stale, whole], [committed, committed])
    watched = _Watched()
    await hub._refresh(7, watched, polled)
    assert len(reads) == 2
    assert [e.event for e in watched.timeline] == [e.event for e in whole]
    assert watched.version == committed
    assert watched.terminal


async def test_a_timeline_overtaken_every_time_is_not_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = [("waiting", T0 + timedelta(seconds=i), i, 0) for i in range(1, READ_TRIES + 2)]
    hub, reads = _hub(monkeypatch, [_entries("requested", "sent answer")], versions)
    watched = _Watched(timeline=_entries("requested"), version=("waiting", T0, 0, 0))
    await hub._refresh(7, watched, ("waiting", T0, 0, 0))
    assert len(reads) == READ_TRIES
    assert [e.event for e in watched.timeline] == ["requested"]  # what listeners had
    assert watched.version == ()  # the next poll reads it again
