"""Live notification events (DESIGN §10): ``GET /v1/notifications/{id}/events`` streams the
timeline as Server-Sent Events, past entries first, closing at the terminal state.

Server cost is bounded by one watcher per API process (:class:`TimelineHub`): it wakes once per
POLL_EVERY, asks the database in one query which watched notifications changed
(``updated_at``, plus new delivery and answer rows), rebuilds the timeline once per changed
notification and, in one more query, publishes only those no commit overtook meanwhile —
whatever the number of listeners. Each event's ``id:`` is its position in the
timeline as it was written down, so a client that reconnects with ``Last-Event-ID`` resumes
after it. An event is sent once, so an entry is held (with what follows it) while it may still
change or have a neighbour slipped in before it: a send until its outcome is written (at most
PENDING_HOLD), an entry written in the last WRITE_MARGIN until a neighbour written just before
it has had the time to commit; the stream does not end while one is held.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerVersion, Delivery, Notification, NotificationAnswer
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationStatus
from notifyflow.models.views import TimelineEntry
from notifyflow.read_model import Timeline, read_timeline

log = logging.getLogger("notifyflow.api")

POLL_EVERY = timedelta(seconds=1)
# The last entries (closure notices) are written just after the terminal status: the stream
# ends once the terminal state has been quiet this long.
SETTLE_AFTER = timedelta(seconds=2)
HEARTBEAT_EVERY = timedelta(seconds=15)
# A new listener's reads of a timeline until one is not overtaken by a commit (a
# notification's steps are seconds apart: the second read is all but always enough).
READ_TRIES = 5
# An entry written this recently may have a neighbour written just before it whose (short)
# transaction has not committed yet: it waits a round, so that one is not slipped in before it.
WRITE_MARGIN = timedelta(milliseconds=500)
# A send still pending this long after it was recorded (its claim; a correction's version
# row) is being retried (the provider or the model is away) or was cut off by a close: it is
# streamed as it stands rather than hold the stream behind it.
PENDING_HOLD = timedelta(seconds=30)


@dataclass
class _Watched:
    version: tuple[object, ...] = ()
    timeline: list[TimelineEntry] = field(default_factory=list)
    # The leading entries that may be sent (see _final); all of them once settled, since it
    # is settled only while nothing is held (the stream's loop waits only while unsettled).
    final: int = 0
    # Some are held: read again next round even if nothing changed (a hold ends with time).
    held: bool = False
    terminal: bool = False
    # Terminal and quiet for SETTLE_AFTER: nothing more will be added.
    settled: bool = False
    quiet_since: datetime | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    listeners: int = 0
    # The first listener reads the timeline; the others wait for it (one read, not one each).
    loading: asyncio.Task[None] | None = None


class TimelineHub:
    """One poller per process for every listener of every notification."""

    def __init__(self, db: SessionFactory, every: timedelta = POLL_EVERY) -> None:
        self._db = db
        self._every = every
        self._watched: dict[int, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # for the benchmark: database round trips made

    async def _version(self, ids: list[int]) -> dict[int, tuple[object, ...]]:
        def count(column: Any, owner: Any, *where: Any) -> Any:
            return (
                select(func.count(column)).where(owner == Notification.id, *where).scalar_subquery()
            )

        async with self._db() as session:
            rows = (
                await session.execute(
                    select(
                        Notification.id,
                        Notification.status,
                        Notification.updated_at,
                        count(Delivery.id, Delivery.notification_id),
                        # A send's outcome written (its row's count does not move).
                        count(Delivery.id, Delivery.notification_id, Delivery.status == "pending"),
                        count(NotificationAnswer.id, NotificationAnswer.notification_id),
                        count(AnswerVersion.id, AnswerVersion.notification_id),
                        count(
                            AnswerVersion.id,
                            AnswerVersion.notification_id,
                            AnswerVersion.status == "pending",
                        ),
                    ).where(Notification.id.in_(ids))
                )
            ).all()
        self.polls += 1
        return {row[0]: tuple(row[1:]) for row in rows}

    async def _read(self, n: int) -> Timeline:
        return await read_timeline(self._db, format_notification_id(n))

    # A timeline is read in several statements: a step committed between two of them (an
    # answer with its sends) would show its sends without its answer, and once the answer
    # appeared, earlier in time, every later event would move one place and a listener
    # resuming by position would miss it. So a timeline is published only when the version
    # read after it is the one it was read under; the poller checks all it read in one query.

    @staticmethod
    def _final(timeline: Timeline, read_at: datetime) -> int:
        """The leading entries an event may be sent for: up to the first send whose outcome
        is not written ("pending" would stay its outcome for this listener) unless it has been
        pending for PENDING_HOLD, or the first entry written in the last WRITE_MARGIN."""
        recent, stuck = read_at - WRITE_MARGIN, read_at - PENDING_HOLD
        for index, (written, pending) in enumerate(
            zip(timeline.written, timeline.pending, strict=True)
        ):
            if written > recent or (pending and written > stuck):
                return index
        return len(timeline.live)

    def _publish(
        self,
        watched: _Watched,
        timeline: Timeline,
        version: tuple[object, ...],
        read_at: datetime,
    ) -> None:
        first_read = watched.quiet_since is None
        changed = version != watched.version
        watched.timeline = timeline.live
        watched.final = self._final(timeline, read_at)
        watched.held = watched.final < len(timeline.live)
        if watched.held:
            # A listener still attached, or a new one, waits for it: the end is not yet.
            watched.settled = False
        watched.version = version
        watched.terminal = NotificationStatus(str(version[0])).is_terminal
        if first_read:
            # Quiet since its last change: the row's update or the last entry written down
            # (closure notices do not touch the row).
            times = [t for t in (version[1], *timeline.written[-1:]) if isinstance(t, datetime)]
            watched.quiet_since = max(times) if times else utcnow()
        elif changed:
            # Quiet from this change on (a held entry read again is no change).
            watched.quiet_since = utcnow()
        self._settle(watched)

    @staticmethod
    async def _notify(watched: _Watched) -> None:
        async with watched.changed:
            watched.changed.notify_all()

    @staticmethod
    def _settle(watched: _Watched) -> bool:
        """True when it just became settled."""
        if watched.settled or not watched.terminal or watched.held:
            return False
        if watched.quiet_since is None:
            return False
        if utcnow() - watched.quiet_since >= SETTLE_AFTER:
            watched.settled = True
            return True
        return False

    async def _load(self, n: int, watched: _Watched) -> None:
        """The first listener's read: until a timeline is not overtaken (READ_TRIES); if every
        read is, nothing is published and the poller reads it again."""
        try:
            version = (await self._version([n]))[n]
            for _ in range(READ_TRIES):
                read_at = utcnow()
                timeline = await self._read(n)
                after = (await self._version([n])).get(n, version)
                if after == version:
                    self._publish(watched, timeline, version, read_at)
                    await self._notify(watched)
                    return
                version = after
        except Exception:
            watched.loading = None  # the next listener tries again
            raise

    async def _poll(self) -> None:
        """One round: which watched notifications changed (one query), their timelines, and
        one query more to publish only those no commit overtook meanwhile."""
        versions = await self._version(list(self._watched))
        changed: dict[int, tuple[object, ...]] = {}
        for n, version in versions.items():
            watched = self._watched.get(n)
            if watched is None:
                continue
            if version != watched.version or watched.held:
                changed[n] = version
            elif self._settle(watched):
                await self._notify(watched)
        if not changed:
            return
        read_at = utcnow()
        read = {n: await self._read(n) for n in changed}
        after = await self._version(list(changed))
        for n, version in changed.items():
            watched = self._watched.get(n)
            if watched is None or after.get(n) != version:
                continue  # overtaken: the next round reads it again
            self._publish(watched, read[n], version, read_at)
            await self._notify(watched)

    async def _run(self) -> None:
        while self._watched:
            try:
                await self._poll()
            except Exception:
                log.exception("event stream poll failed; trying again")
            await asyncio.sleep(self._every.total_seconds())
        self._task = None

    async def stream(self, n: int, after: int) -> AsyncIterator[str]:
        """SSE lines for notification ``n``, entries after index ``after``."""
        watched = self._watched.setdefault(n, _Watched())
        watched.listeners += 1
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        try:
            if watched.loading is None:
                watched.loading = asyncio.create_task(self._load(n, watched))
            await asyncio.shield(watched.loading)
            sent = after
            while True:
                for index in range(sent + 1, watched.final):
                    entry = watched.timeline[index]
                    data = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False)
                    yield f"id: {index}\nevent: {entry.event}\ndata: {data}\n\n"
                    sent = index
                if watched.settled and sent >= len(watched.timeline) - 1:
                    return
                beat = False
                async with watched.changed:
                    # Checked under the lock: a refresh between the loop above and this wait
                    # would otherwise go unnoticed until the heartbeat.
                    if sent >= watched.final - 1 and not watched.settled:
                        try:
                            await asyncio.wait_for(
                                watched.changed.wait(), HEARTBEAT_EVERY.total_seconds()
                            )
                        except TimeoutError:
                            beat = True
                if beat:
                    yield ": heartbeat\n\n"
        finally:
            watched.listeners -= 1
            if watched.listeners == 0:
                self._watched.pop(n, None)
