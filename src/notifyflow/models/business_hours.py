"""Business time: a merchant's opening hours in its own timezone, and deadlines counted on them.

Pure and deterministic (no clock, no I/O beyond the timezone rules the caller hands in), so the
workflow computes every deadline itself from ``workflow.now()`` and replays to the same
instants. A schedule maps ``monday`` … ``sunday`` to ``HH:MM-HH:MM`` spans in local time; a
missing day is closed; a span whose end is not after its start runs overnight into the next day
(``22:00-02:00``), and ``24:00`` is the end of the day. Lengths are measured in real elapsed
time, so the night a clock springs forward holds one hour less.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
# How far ahead a deadline is looked for: past this, the schedule is as good as closed.
HORIZON_DAYS = 400
MAX_SPANS_PER_DAY = 8

Span = tuple[int, int]  # minutes from local midnight: start, end (end may exceed 1,440)
Schedule = dict[int, list[Span]]  # weekday (Monday = 0) → spans


class ScheduleError(ValueError):
    """A malformed schedule; ``path`` names the field (``/business_hours/monday/0``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def parse_schedule(raw: Mapping[str, Sequence[str]]) -> Schedule:
    """The schedule of ``{"monday": ["09:00-18:00"], …}``; ScheduleError on a bad value."""
    if not isinstance(raw, Mapping):
        raise ScheduleError("/business_hours", "must be an object keyed monday … sunday")
    schedule: Schedule = {}
    for day, spans in raw.items():
        if day not in WEEKDAYS:
            raise ScheduleError(f"/business_hours/{day}", "not a day (monday … sunday)")
        if not isinstance(spans, list | tuple) or len(spans) > MAX_SPANS_PER_DAY:
            raise ScheduleError(
                f"/business_hours/{day}", f"must be a list of at most {MAX_SPANS_PER_DAY} spans"
            )
        parsed: list[Span] = []
        for i, text in enumerate(spans):
            path = f"/business_hours/{day}/{i}"
            match = _SPAN.match(text) if isinstance(text, str) else None
            if match is None:
                raise ScheduleError(path, "must be HH:MM-HH:MM")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
                raise ScheduleError(path, "not a time of day")
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if start == end:
                raise ScheduleError(path, "opens and closes at the same time")
            if end < start:
                end += 24 * 60  # overnight into the next day
            parsed.append((start, end))
        parsed.sort()
        for (_, end), (start, _) in zip(parsed, parsed[1:], strict=False):
            if start < end:
                raise ScheduleError(f"/business_hours/{day}", "spans overlap")
        schedule[WEEKDAYS.index(day)] = parsed
    return schedule


def is_closed_always(schedule: Schedule) -> bool:
    return not any(schedule.values())


def _local(day: date, minutes: int, zone: tzinfo) -> datetime:
    """The instant of ``minutes`` after local midnight of ``day`` (a wall time that a DST gap
    skips is taken with the offset before the gap, as zoneinfo does)."""
    extra, minutes = divmod(minutes, 24 * 60)
    naive = datetime.combine(day + timedelta(days=extra), time(minutes // 60, minutes % 60))
    return naive.replace(tzinfo=zone).astimezone(UTC)


def open_spans(
    schedule: Schedule, zone: tzinfo, start: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Open periods in UTC, in order, from the local day before ``start`` (its overnight span
    may still be open) up to HORIZON_DAYS ahead, clipped to begin no earlier than ``start``."""
    first = start.astimezone(zone).date() - timedelta(days=1)
    for offset in range(HORIZON_DAYS + 1):
        day = first + timedelta(days=offset)
        for begin, end in schedule.get(day.weekday(), []):
            opens, closes = _local(day, begin, zone), _local(day, end, zone)
            if closes <= start or closes <= opens:
                continue
            yield max(opens, start), closes


def add_business_time(
    schedule: Schedule, zone: tzinfo, start: datetime, duration: timedelta
) -> datetime | None:
    """The instant when ``duration`` of open time has passed since ``start``; None when the
    schedule has no open time (the caller then counts wall time and says so)."""
    if is_closed_always(schedule):
        return None
    remaining = duration
    if remaining <= timedelta(0):
        return start
    last_end = start
    for opens, closes in open_spans(schedule, zone, start):
        opens = max(opens, last_end)  # overlapping overnight spans count once
        if closes <= opens:
            continue
        length = closes - opens
        if remaining <= length:
            return opens + remaining
        remaining -= length
        last_end = closes
    return None


def business_time_between(
    schedule: Schedule, zone: tzinfo, start: datetime, end: datetime
) -> timedelta:
    """Open time between two instants (the SLA's time to first answer, in business time)."""
    total = timedelta(0)
    last_end = start
    for opens, closes in open_spans(schedule, zone, start):
        opens = max(opens, last_end)
        if opens >= end:
            break
        if closes > opens:
            total += min(closes, end) - opens
        last_end = max(last_end, closes)
    return total


def deadline(
    hours: Mapping[str, Sequence[str]] | None, timezone: str, start: datetime, after: timedelta
) -> datetime:
    """``after`` past ``start``: in open business time when ``hours`` has any (the workflow's
    timers, computed from ``workflow.now()`` alone), else in wall time."""
    if hours:
        try:
            schedule = parse_schedule(hours)
            zone = _zone(timezone)
        except (ScheduleError, ValueError):
            return start + after
        found = add_business_time(schedule, zone, start, after)
        if found is not None:
            return found
    return start + after


def _zone(name: str) -> tzinfo:
    # ZoneInfo comes from this module's own import: the workflow sandbox passes this module
    # through, and an import at call time would get its restricted proxy instead.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc
