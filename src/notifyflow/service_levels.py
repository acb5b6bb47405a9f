"""Merchant service levels (DESIGN §10): business hours and per-merchant timers and target,
overriding the global defaults; read by the starter when a notification is recorded."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow.config import Settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Merchant, MerchantSettings
from notifyflow.db.types import utcnow
from notifyflow.models.business_hours import (
    Schedule,
    ScheduleError,
    add_business_time,
    is_closed_always,
    parse_schedule,
)
from notifyflow.models.errors import NotificationError, RefusalCode

MAX_SECONDS = 30 * 24 * 3600
Seconds = Field(default=None, ge=1, le=MAX_SECONDS, description="seconds")

# The first-answer target when a merchant sets none: the reminder deadline.
TIMERS = ("remind_after", "escalate_after", "auto_close_after")


class MerchantSettingsBody(BaseModel):
    business_hours: dict[str, list[str]] | None = Field(
        default=None,
        examples=[{"monday": ["09:00-18:00"], "saturday": ["10:00-14:00"]}],
        description="Spans in the merchant's timezone; a missing day is closed; null: always",
    )
    remind_after: int | None = Seconds
    escalate_after: int | None = Seconds
    auto_close_after: int | None = Seconds
    first_answer_target: int | None = Seconds
    csat_enabled: bool = False


class MerchantSettingsView(MerchantSettingsBody):
    merchant_id: int
    timezone: str
    updated_at: datetime | None = None
    # The timers that apply now (the merchant's, else the deployment's), in seconds.
    effective: dict[str, int]
    # True when business hours are set but have no open time: timers run on wall time.
    business_hours_ignored: bool = False
    # After a PUT: how many waiting notifications were retimed (null: not attempted or failed).
    waiting_retimed: int | None = None


def _invalid(path: str, message: str) -> NotificationError:
    return NotificationError(
        RefusalCode.invalid_input,
        f"{path.removeprefix('/')}: {message}",
        details=[{"in": "body", "path": path, "message": message}],
    )


def effective_seconds(row: MerchantSettings | None, defaults: Settings) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in TIMERS:
        own = getattr(row, name) if row is not None else None
        out[name] = own if own is not None else int(getattr(defaults, name).total_seconds())
    target = row.first_answer_target if row is not None else None
    out["first_answer_target"] = target if target is not None else out["remind_after"]
    return out


def _view(
    merchant: Merchant, row: MerchantSettings | None, defaults: Settings
) -> MerchantSettingsView:
    hours = row.business_hours if row is not None else None
    return MerchantSettingsView(
        merchant_id=merchant.id,
        timezone=merchant.timezone,
        business_hours=hours,
        remind_after=row.remind_after if row else None,
        escalate_after=row.escalate_after if row else None,
        auto_close_after=row.auto_close_after if row else None,
        first_answer_target=row.first_answer_target if row else None,
        csat_enabled=bool(row.csat_enabled) if row else False,
        updated_at=row.updated_at if row else None,
        effective=effective_seconds(row, defaults),
        business_hours_ignored=hours is not None and is_closed_always(parse_schedule(hours)),
    )


async def _merchant(session: AsyncSession, merchant_id: int) -> Merchant:
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotificationError(
            RefusalCode.not_found,
            f"merchant {merchant_id} does not exist",
            details={"merchant_id": merchant_id},
        )
    return merchant


async def read(db: SessionFactory, merchant_id: int, defaults: Settings) -> MerchantSettingsView:
    async with db() as session:
        merchant = await _merchant(session, merchant_id)
        row = await session.get(MerchantSettings, merchant_id)
    return _view(merchant, row, defaults)


def check(body: MerchantSettingsBody, defaults: Settings) -> None:
    """Refuse a bad value naming its field; nothing is written."""
    if body.business_hours is not None:
        try:
            parse_schedule(body.business_hours)
        except ScheduleError as exc:
            raise _invalid(exc.path, exc.message) from None
    values = {
        name: getattr(body, name)
        if getattr(body, name) is not None
        else int(getattr(defaults, name).total_seconds())
        for name in TIMERS
    }
    if not values["remind_after"] < values["escalate_after"] < values["auto_close_after"]:
        raise _invalid(
            "/escalate_after",
            "timers must grow: remind_after < escalate_after < auto_close_after "
            f"(now {values['remind_after']} / {values['escalate_after']} / "
            f"{values['auto_close_after']} s, defaults included)",
        )


async def write(
    db: SessionFactory, merchant_id: int, body: MerchantSettingsBody, defaults: Settings
) -> MerchantSettingsView:
    check(body, defaults)
    async with db() as session:
        merchant = await _merchant(session, merchant_id)
        row = await session.get(MerchantSettings, merchant_id)
        if row is None:
            row = MerchantSettings(merchant_id=merchant_id)
            session.add(row)
        for name, value in body.model_dump().items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        await session.commit()
    return _view(merchant, row, defaults)


async def load(session: AsyncSession, merchant_id: int) -> MerchantSettings | None:
    return await session.get(MerchantSettings, merchant_id)


def as_timedelta(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


def snapshot(
    row: MerchantSettings | None,
    timezone: str,
    defaults: Settings,
    type_timing: dict[str, timedelta | None],
    urgent: bool,
) -> dict[str, Any]:
    """What a new notification runs on: the merchant's timers (else the type's, else the
    deployment's), halved when urgent; its hours and timezone; its first-answer target."""
    out: dict[str, Any] = {}
    for name in TIMERS:
        own = getattr(row, name) if row is not None else None
        by_type = type_timing.get(name)
        seconds = (
            own
            if own is not None
            else int(by_type.total_seconds())
            if by_type is not None
            else int(getattr(defaults, name).total_seconds())
        )
        out[name] = seconds // 2 if urgent else seconds
    # A target the merchant set escalates when breached; without one, the report measures
    # against the reminder deadline and nothing escalates early.
    own_target = row.first_answer_target if row is not None else None
    out["first_answer_target"] = (
        None if own_target is None else own_target // 2 if urgent else own_target
    )
    out["sla_target"] = out["first_answer_target"] or out["remind_after"]
    out["timezone"] = timezone
    out["business_hours"] = row.business_hours if row is not None else None
    out["csat_enabled"] = bool(row.csat_enabled) if row is not None else False
    return out


def schedule_of(service: Mapping[str, Any]) -> tuple[Schedule, tzinfo] | None:
    """The business-hours clock of a snapshot, or None when the clock always runs (no hours,
    hours with no open time, or an unknown timezone)."""
    hours = service.get("business_hours")
    if not hours:
        return None
    try:
        schedule = parse_schedule(hours)
        zone = ZoneInfo(str(service.get("timezone") or "UTC"))
    except (ScheduleError, ZoneInfoNotFoundError, ValueError):
        return None
    return None if is_closed_always(schedule) else (schedule, zone)


def due_at(service: Mapping[str, Any], start: datetime, seconds: int) -> datetime:
    """``seconds`` after ``start``, in business time when the snapshot has hours."""
    clock = schedule_of(service)
    delta = timedelta(seconds=seconds)
    if clock is None:
        return start + delta
    return add_business_time(clock[0], clock[1], start, delta) or start + delta


async def retime_waiting(
    client: Any, merchant_id: int, service: Mapping[str, Any], *, limit: int = 10_000
) -> int:
    """Signal every waiting notification of the merchant with its new timers and clock (one
    signal each: the cost of a settings change, not of a notification). Returns how many."""
    from notifyflow.models.workflow_io import ServiceChange, ServiceLevel, Timing

    target = service.get("first_answer_target")
    change = ServiceChange(
        timing=Timing(
            remind_after=timedelta(seconds=service["remind_after"]),
            escalate_after=timedelta(seconds=service["escalate_after"]),
            auto_close_after=timedelta(seconds=service["auto_close_after"]),
        ),
        service=ServiceLevel(
            timezone=service.get("timezone") or "UTC",
            business_hours=service.get("business_hours"),
            first_answer_target=timedelta(seconds=target) if target else None,
            csat_enabled=bool(service.get("csat_enabled")),
        ),
    )
    query = (
        f'WorkflowType = "NotificationWorkflow" AND ExecutionStatus = "Running" '
        f"AND MerchantId = {int(merchant_id)}"
    )
    count = 0
    async for execution in client.list_workflows(query, limit=limit):
        await client.get_workflow_handle(execution.id).signal("service_level", change)
        count += 1
    return count


REPORT_MAX_ROWS = 100_000
DEFAULT_REPORT_DAYS = 30


class SlaReport(BaseModel):
    merchant_id: int
    since: datetime
    until: datetime
    count: int
    answered_within_target_pct: float | None = None
    time_to_first_answer_p50_s: float | None = None
    time_to_first_answer_p90_s: float | None = None
    breaches: int = 0
    # Customer satisfaction (DESIGN §10) of the asks about these notifications: the average
    # score (1–5) of the rated ones, and rated / asked (0–1); null when none was asked.
    csat_average: float | None = None
    csat_response_rate: float | None = None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


async def report(
    db: SessionFactory, merchant_id: int, since: datetime | None, until: datetime | None
) -> SlaReport:
    """The merchant's first-answer figures for notifications requested in [since, until)."""
    from sqlalchemy import select

    from notifyflow import csat
    from notifyflow.db.tables import Notification
    from notifyflow.read_model import sla_view

    end = until or utcnow()
    start = since or end - timedelta(days=DEFAULT_REPORT_DAYS)
    if start >= end:
        raise _invalid("/since", "must be before until")
    async with db() as session:
        await _merchant(session, merchant_id)
        rows = (
            await session.scalars(
                select(Notification)
                .where(
                    Notification.merchant_id == merchant_id,
                    Notification.created_at >= start,
                    Notification.created_at < end,
                )
                .order_by(Notification.id)
                .limit(REPORT_MAX_ROWS)
            )
        ).all()
        satisfaction = await csat.figures(session, merchant_id, start, end)
    slas = [sla_view(r) for r in rows]
    decided = [s for s in slas if s.answered_within_target is not None]
    times = [s.time_to_first_answer_s for s in slas if s.time_to_first_answer_s is not None]
    within = sum(1 for s in decided if s.answered_within_target)
    return SlaReport(
        merchant_id=merchant_id,
        since=start,
        until=end,
        count=len(rows),
        answered_within_target_pct=round(100 * within / len(decided), 1) if decided else None,
        time_to_first_answer_p50_s=_percentile(times, 0.5),
        time_to_first_answer_p90_s=_percentile(times, 0.9),
        breaches=sum(1 for s in slas if s.breached_at is not None),
        csat_average=satisfaction.average,
        csat_response_rate=satisfaction.response_rate,
    )
