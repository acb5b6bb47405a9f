"""Customer satisfaction (DESIGN §10): the record of the 1–5 ask, the customer's rating, and the
figures the notification body and the SLA report show.

One ``csat_response`` row per notification, written when the ask went out (the ask itself goes
through the delivery ledger: activities/satisfaction.py). A rating is taken from the inbound
WhatsApp webhook: a quick-reply tap (``ButtonPayload`` ``csat:NOTIF_<n>:<score>``, for that
notification, from its own conversation) or a bare digit 1–5 within a day of the conversation's
latest ask. The first rating wins; a later one is an ordinary message of the conversation."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow import metrics, worker_metrics
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import CsatResponse, Notification
from notifyflow.models.ids import MalformedNotificationId, parse_notification_id
from notifyflow.models.views import CsatView

log = logging.getLogger(__name__)

# A bare digit counts as a rating this long after the ask; later it is just a message.
DIGIT_REPLY_WINDOW = timedelta(days=1)
PAYLOAD_PREFIX = "csat:"
_PAYLOAD = re.compile(r"^csat:(NOTIF_\d{1,18}):([1-5])$")
_DIGIT = re.compile(r"^[1-5]$")

METHOD_QUICK_REPLY = "quick_reply"
METHOD_TEMPLATE = "template"


def button_payload(public_id: str, score: int) -> str:
    """What a quick-reply button of the ask carries (the Content definitions' ``id``)."""
    return f"{PAYLOAD_PREFIX}{public_id}:{score}"


def parse_payload(payload: str | None) -> tuple[int, int] | None:
    """``csat:NOTIF_12:4`` → (12, 4); anything else None."""
    match = _PAYLOAD.match((payload or "").strip())
    if match is None:
        return None
    try:
        return parse_notification_id(match.group(1)), int(match.group(2))
    except MalformedNotificationId:
        return None


def bare_digit(body: str) -> int | None:
    """A message that is only a digit 1–5 (surrounding spaces aside)."""
    text = body.strip()
    return int(text) if _DIGIT.match(text) else None


def may_be_rating(payload: str | None, body: str) -> bool:
    """Cheap test run on every customer message: only these cost a look-up."""
    return (payload or "").startswith(PAYLOAD_PREFIX) or bare_digit(body) is not None


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def record_ask(
    db: SessionFactory,
    *,
    notification_id: int,
    merchant_id: int,
    conversation_id: int,
    method: str,
    at: datetime,
) -> CsatResponse:
    """The ask went out: its row, written once (a retried activity finds the first one)."""
    async with db() as session:
        dialect = (await session.connection()).dialect.name
        stmt: Insert = (
            _insert(dialect)(CsatResponse)
            .values(
                notification_id=notification_id,
                merchant_id=merchant_id,
                conversation_id=conversation_id,
                method=method,
                asked_at=at,
            )
            .on_conflict_do_nothing(index_elements=["notification_id"])
        )
        inserted = (await session.execute(stmt)).rowcount  # type: ignore[attr-defined]
        await session.commit()
        row = await session.get(CsatResponse, notification_id)
        assert row is not None
    if inserted:
        # Counted where it happens (the worker), once per ask.
        worker_metrics.count(
            "notifyflow_csat_asks", "Satisfaction asks sent, by method", {"method": method}
        )
    return row


async def asked(db: SessionFactory, notification_id: int) -> CsatResponse | None:
    async with db() as session:
        return await session.get(CsatResponse, notification_id)


@dataclass(frozen=True)
class Rating:
    notification_id: int
    score: int


async def record_reply(
    session: AsyncSession,
    *,
    conversation_id: int,
    message_sid: str,
    payload: str | None,
    body: str,
    at: datetime,
) -> Rating | None:
    """The customer's rating, when this message is one and the ask it answers is still
    unrated; None otherwise (the message stays an ordinary customer message). Written in the
    caller's transaction, the one that stores the message: a webhook retried after a crash
    finds both or neither. Call :func:`counted` after the commit."""
    tapped = parse_payload(payload)
    if tapped is not None:
        notification_id, score = tapped
    else:
        digit = bare_digit(body)
        if digit is None:
            return None
        # The conversation's latest ask of the last day: a digit answers that one only.
        latest = await session.scalar(
            select(CsatResponse)
            .where(
                CsatResponse.conversation_id == conversation_id,
                CsatResponse.asked_at >= at - DIGIT_REPLY_WINDOW,
                CsatResponse.asked_at <= at,
            )
            .order_by(CsatResponse.asked_at.desc())
            .limit(1)
        )
        if latest is None:
            return None
        notification_id, score = latest.notification_id, digit
    # The conversation must be the ask's own: a payload names a notification, and nobody
    # rates another customer's. The first rating wins (answered_at IS NULL).
    changed = await session.execute(
        update(CsatResponse)
        .where(
            CsatResponse.notification_id == notification_id,
            CsatResponse.conversation_id == conversation_id,
            CsatResponse.answered_at.is_(None),
        )
        .values(score=score, answered_at=at, answer_message_sid=message_sid)
        .execution_options(synchronize_session=False)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        log.info("csat reply %s not recorded: no unrated ask it answers", message_sid)
        return None
    return Rating(notification_id, score)


def counted(rating: Rating) -> None:
    """A rating committed: counted and logged once, where it happened."""
    metrics.count_csat_rating(rating.score)
    log.info("csat: notification %d rated %d", rating.notification_id, rating.score)


def view(row: CsatResponse | None) -> CsatView | None:
    if row is None:
        return None
    return CsatView(
        asked_at=row.asked_at, method=row.method, score=row.score, answered_at=row.answered_at
    )


async def views(session: AsyncSession, ids: Sequence[int]) -> dict[int, CsatView]:
    """The CSAT of several notifications in one statement."""
    if not ids:
        return {}
    rows = (
        await session.scalars(select(CsatResponse).where(CsatResponse.notification_id.in_(ids)))
    ).all()
    return {r.notification_id: v for r in rows if (v := view(r)) is not None}


@dataclass(frozen=True)
class Figures:
    average: float | None
    response_rate: float | None


async def figures(
    session: AsyncSession, merchant_id: int, start: datetime, end: datetime
) -> Figures:
    """Average score and response rate (rated / asked) of the asks about notifications
    requested in [start, end); null when nothing was asked (or nothing rated, for the
    average)."""
    asked_count, rated_count, average = (
        await session.execute(
            select(
                func.count(CsatResponse.notification_id),
                func.count(CsatResponse.score),
                func.avg(CsatResponse.score),
            )
            .join(Notification, Notification.id == CsatResponse.notification_id)
            .where(
                Notification.merchant_id == merchant_id,
                Notification.created_at >= start,
                Notification.created_at < end,
            )
        )
    ).one()
    if not asked_count:
        return Figures(None, None)
    return Figures(
        round(float(average), 2) if average is not None else None,
        round(rated_count / asked_count, 3),
    )
