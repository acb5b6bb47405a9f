"""Business time over real timezone rules: weekends, DST changes, overnight spans, a week with
no open hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifyflow.models.business_hours import (
    ScheduleError,
    add_business_time,
    business_time_between,
    parse_schedule,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_6 = parse_schedule(
    {d: ["09:00-18:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def test_friday_evening_counts_from_monday_morning() -> None:
    friday = local(NY, 2026, 12, 4, 18, 30)  # a Friday, after closing
    assert add_business_time(WEEKDAYS_9_TO_6, NY, friday, timedelta(minutes=30)) == local(
        NY, 2026, 12, 7, 9, 30
    )
    # Two hours, then a day (9 h of open time) later: Tuesday 11:00.
    assert add_business_time(WEEKDAYS_9_TO_6, NY, friday, timedelta(hours=11)) == local(
        NY, 2026, 12, 8, 11, 0
    )


def test_inside_hours_the_clock_runs_and_stops_at_closing() -> None:
    start = local(NY, 2026, 12, 1, 17, 0)  # Tuesday 17:00: one open hour left today
    assert add_business_time(WEEKDAYS_9_TO_6, NY, start, timedelta(hours=2)) == local(
        NY, 2026, 12, 2, 10, 0
    )
    assert business_time_between(
        WEEKDAYS_9_TO_6, NY, start, local(NY, 2026, 12, 2, 10, 0)
    ) == timedelta(hours=2)


def test_the_night_clocks_spring_forward_holds_one_hour_less() -> None:
    # US DST begins Sunday 2026-03-08 at 02:00 local: 22:00-06:00 overnight lasts 7 h.
    nights = parse_schedule({"saturday": ["22:00-06:00"]})
    start = local(NY, 2026, 3, 7, 22, 0)
    assert add_business_time(nights, NY, start, timedelta(hours=7)) == local(NY, 2026, 3, 8, 6, 0)
    # An eighth hour falls into the next Saturday night, 22:00 + 1 h.
    assert add_business_time(nights, NY, start, timedelta(hours=8)) == local(NY, 2026, 3, 14, 23, 0)


def test_the_night_clocks_fall_back_holds_one_hour_more() -> None:
    # Europe: DST ends Sunday 2026-10-25 at 03:00 local → 02:00; 00:00-04:00 lasts 5 h.
    early = parse_schedule({"sunday": ["00:00-04:00"]})
    start = local(BERLIN, 2026, 10, 25, 0, 0)
    assert business_time_between(early, BERLIN, start, start + timedelta(hours=6)) == timedelta(
        hours=5
    )
    assert add_business_time(early, BERLIN, start, timedelta(hours=5)) == start + timedelta(hours=5)


def test_overnight_spans_and_24_00() -> None:
    schedule = parse_schedule({"monday": ["20:00-24:00"], "tuesday": ["00:00-02:00"]})
    start = local(BERLIN, 2026, 12, 7, 19, 0)  # Monday
    assert add_business_time(schedule, BERLIN, start, timedelta(hours=5)) == local(
        BERLIN, 2026, 12, 8, 1, 0
    )
    overnight = parse_schedule({"monday": ["20:00-02:00"]})
    assert add_business_time(overnight, BERLIN, start, timedelta(hours=5)) == local(
        BERLIN, 2026, 12, 8, 1, 0
    )


def test_a_schedule_with_no_open_hours_gives_no_deadline() -> None:
    assert (
        add_business_time(parse_schedule({}), NY, local(NY, 2026, 12, 1, 9), timedelta(1)) is None
    )
    assert (
        add_business_time(
            parse_schedule({"monday": []}), NY, local(NY, 2026, 12, 1, 9), timedelta(1)
        )
        is None
    )


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"funday": ["09:00-10:00"]}, "/business_hours/funday"),
        ({"monday": ["9-10"]}, "/business_hours/monday/0"),
        ({"monday": ["25:00-26:00"]}, "/business_hours/monday/0"),
        ({"monday": ["10:00-10:00"]}, "/business_hours/monday/0"),
        ({"monday": ["09:00-12:00", "11:00-13:00"]}, "/business_hours/monday"),
        ({"monday": "09:00-10:00"}, "/business_hours/monday"),
    ],
)
def test_malformed_schedules_name_the_field(raw: dict[str, object], path: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        parse_schedule(raw)  # type: ignore[arg-type]
    assert refused.value.path == path
