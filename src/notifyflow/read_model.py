"""The read side: a notification as the API, the CLI and the tools show it, the list, and the
timeline an operator reads. Reads the database only; nothing here talks to Temporal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from notifyflow import csat, service_levels
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    AnswerVersion,
    CsatResponse,
    Delivery,
    MerchantUser,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.models.business_hours import business_time_between
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationStatus, NotificationType
from notifyflow.models.views import (
    AnswerView,
    DeliveryView,
    NotificationView,
    RecipientView,
    SlaView,
    TimelineEntry,
)
from notifyflow.models.vocabulary import DeliveryKind, RecipientKind


async def get_notification(db: SessionFactory, notification_id: str) -> NotificationView:
    n = parse_id(notification_id)
    public = format_notification_id(n)
    async with db() as session:
        row = await session.get(Notification, n)
        if row is None:
            raise NotificationError(RefusalCode.not_found, f"notification {public} not found")
        recipients = (
            await session.execute(
                select(NotificationRecipient, MerchantUser)
                .join(MerchantUser, MerchantUser.id == NotificationRecipient.merchant_user_id)
                .where(NotificationRecipient.notification_id == n)
                .order_by(NotificationRecipient.id)
            )
        ).all()
        answers = (
            await session.scalars(
                select(NotificationAnswer)
                .where(NotificationAnswer.notification_id == n)
                .order_by(NotificationAnswer.created_at, NotificationAnswer.id)
            )
        ).all()
        delivery = await session.scalar(
            select(Delivery)
            .where(
                Delivery.notification_id == n,
                Delivery.recipient_kind == RecipientKind.customer,
                Delivery.kind == DeliveryKind.answer,
            )
            .order_by(Delivery.id.desc())
            .limit(1)
        )
        versions = (
            await session.scalars(
                select(AnswerVersion)
                .where(AnswerVersion.notification_id == n)
                .order_by(AnswerVersion.version)
            )
        ).all()
        rating = await session.get(CsatResponse, n)
    view = notification_view(row, recipients, answers, delivery, versions)
    view.csat = csat.view(rating)
    return view


def sla_view(row: Notification, now: datetime | None = None) -> SlaView:
    """Due time, whether the first answer came within it, when it was breached, and how long
    the first answer took (business time when the merchant has hours)."""
    due = row.first_answer_due_at
    if due is None:
        return SlaView()
    answered = row.answered_at
    # Closed or withdrawn unanswered: judged at its end, not by today's clock.
    ended = row.closed_at if answered is None else None
    moment = answered or ended or now or utcnow()
    breached = due if moment > due else None
    if answered is None and ended is not None and breached is None:
        return SlaView(first_answer_due_at=due)
    taken: float | None = None
    if answered is not None:
        clock = service_levels.schedule_of(row.service_level or {})
        span = (
            business_time_between(clock[0], clock[1], row.created_at, answered)
            if clock is not None
            else answered - row.created_at
        )
        taken = round(span.total_seconds(), 3)
    return SlaView(
        first_answer_due_at=due,
        answered_within_target=None if answered is None and breached is None else breached is None,
        breached_at=breached,
        time_to_first_answer_s=taken,
    )


def notification_view(
    row: Notification,
    recipients: Sequence[Any],
    answers: Sequence[NotificationAnswer],
    delivery: Delivery | None,
    versions: Sequence[AnswerVersion] = (),
) -> NotificationView:
    """The row with what is attached to it (recipients with their users, answers and the
    corrections of a delivered answer, the customer's delivery)."""
    answer_views: list[AnswerView] = []
    for a in answers:
        view = AnswerView(
            answered_by=a.answered_by,
            source=a.source,
            accepted=a.accepted,
            # Operators see the whole answer, resolution notes included (they are internal);
            # only the customer-facing field ever leaves for a customer or an LLM.
            answer=a.answer_text,
            reason_code=a.reason_code,
            reason=a.reason,
            created_at=a.created_at,
            template=a.template_code,
        )
        view._recorded_at = a.recorded_at
        answer_views.append(view)
    if versions:
        first = next((v for v in answer_views if v.accepted), None)
        if first is not None:
            first.version = 1
        answer_views += [
            AnswerView(
                answered_by=v.answered_by,
                source=v.source,
                accepted=True,
                answer=v.answer_text,
                reason=v.failure_reason,
                created_at=v.created_at,
                kind="correction",
                version=v.version,
                delivery_status=v.status,
            )
            for v in versions
            if v.version > 1
        ]
        # One history in time order: refusals that came after a correction stay after it.
        answer_views.sort(key=lambda a: a.created_at)
    return NotificationView(
        notification_id=format_notification_id(row.id),
        type=row.type,
        status=row.status,
        merchant_id=row.merchant_id,
        conversation_id=row.conversation_id,
        context={k: v for k, v in row.context.items()},
        answer_schema=row.answer_schema,
        allow_multiple_answers=row.allow_multiple_answers,
        recipients=[
            RecipientView(
                merchant_user_id=user.id,
                name=user.name,
                user_type=user.user_type,
                reason=rec.reason,
                conversation_id=rec.conversation_id,
            )
            for rec, user in recipients
        ],
        answers=answer_views,
        delivery=DeliveryView(
            method=row.delivery_method or (delivery.method if delivery else None),
            channel=delivery.channel if delivery else None,
            status=delivery.status if delivery else None,
            provider_message_id=delivery.provider_message_id if delivery else None,
            failure_reason=row.failure_reason,
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
        answered_at=row.answered_at,
        closed_at=row.closed_at,
        delivered_at=row.delivered_at,
        close_reason=row.close_reason,
        priority=row.priority or "normal",
        sla=sla_view(row),
    )


async def list_notifications(
    db: SessionFactory,
    *,
    status: str | None = None,
    type: str | None = None,
    merchant_id: int | None = None,
    limit: int = 100,
) -> list[NotificationView]:
    if status is not None and status not in NotificationStatus.__members__:
        raise NotificationError(RefusalCode.invalid_input, f"unknown status {status!r}")
    if type is not None and type not in NotificationType.__members__:
        raise NotificationError(RefusalCode.unknown_type, f"unknown notification type {type!r}")
    query = select(Notification).order_by(Notification.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(Notification.status == status)
    if type:
        query = query.where(Notification.type == type)
    if merchant_id is not None:
        query = query.where(Notification.merchant_id == merchant_id)
    async with db() as session:
        rows = (await session.scalars(query)).all()
        ids = [r.id for r in rows]
        answers = (
            (
                await session.scalars(
                    select(NotificationAnswer)
                    .where(NotificationAnswer.notification_id.in_(ids))
                    .order_by(NotificationAnswer.created_at, NotificationAnswer.id)
                )
            ).all()
            if ids
            else []
        )
        ratings = await csat.views(session, ids)
    by_id: dict[int, list[NotificationAnswer]] = {}
    for a in answers:
        by_id.setdefault(a.notification_id, []).append(a)
    views = [notification_view(r, [], by_id.get(r.id, []), None) for r in rows]
    for v, r in zip(views, rows, strict=True):
        v.csat = ratings.get(r.id)
    return views


@dataclass(frozen=True)
class Timeline:
    """A notification's timeline as ``show`` reads it (``entries``, in time order) and as the
    live event stream sends it (``live``, in the order the entries were written down, with
    ``written`` and ``pending`` for each): an accepted answer is written with its sends,
    after the workflow took it and its reply was composed, so in time order it would slip in
    before entries a listener already had. ``pending``: a send between its claim and its
    result, recorded with an outcome it does not have yet (milliseconds as a rule); the
    stream sends each entry once, so it waits for those."""

    entries: list[TimelineEntry]
    live: list[TimelineEntry]
    written: list[datetime]
    pending: list[bool]


async def notification_timeline(db: SessionFactory, notification_id: str) -> list[TimelineEntry]:
    """Requested, sent to whom, reminders, answers accepted and refused, delivery, closure."""
    return (await read_timeline(db, notification_id)).entries


async def read_timeline(db: SessionFactory, notification_id: str) -> Timeline:
    """:func:`notification_timeline`, also in the order it was written down, with what of it
    is pending (:class:`Timeline`)."""
    n = parse_id(notification_id)
    view = await get_notification(db, notification_id)
    async with db() as session:
        deliveries = (
            await session.scalars(
                select(Delivery).where(Delivery.notification_id == n).order_by(Delivery.id)
            )
        ).all()
        names = {
            u.id: u.name
            for u in (
                await session.scalars(
                    select(MerchantUser).where(MerchantUser.merchant_id == view.merchant_id)
                )
            ).all()
        }
    # (entry, when it was written down, whether its outcome is still to be written)
    lines: list[tuple[TimelineEntry, datetime, bool]] = []

    def add(entry: TimelineEntry, written: datetime | None = None, pending: bool = False) -> None:
        lines.append((entry, written or entry.at, pending))

    add(TimelineEntry(at=view.created_at, event="requested", detail=view.type))
    for message in view.context.get("customer_messages", []):
        # The customer's follow-ups (DESIGN §8), forwarded to the recipients.
        written = message.get("recorded_at")
        add(
            TimelineEntry(
                at=datetime.fromisoformat(message["at"]),
                event="customer message",
                detail=f"#{message['seq']}: {message['text']}",
            ),
            written=datetime.fromisoformat(written) if written else None,
        )
    for d in deliveries:
        who = names.get(d.merchant_user_id or -1, "customer")
        outcome = d.status if not d.error_code else f"{d.status} ({d.error_code})"
        entry = TimelineEntry(
            at=d.created_at,
            event=f"sent {d.kind}",
            detail=f"to {who} by {d.method} via {d.channel}: {outcome}",
        )
        add(entry, pending=d.status == "pending")
    for a in view.answers:
        who = names.get(a.answered_by or -1, f"user {a.answered_by}")
        if a.kind == "correction":
            entry = TimelineEntry(
                at=a.created_at,
                event=f"correction v{a.version}",
                detail=f"by {who} via {a.source}: {a.delivery_status}"
                + (f" ({a.reason})" if a.reason else ""),
            )
            add(entry, pending=a.delivery_status == "pending")
            continue
        entry = TimelineEntry(
            at=a.created_at,
            event="answer accepted" if a.accepted else "answer refused",
            detail=f"by {who} via {a.source}"
            + (f" with template #{a.template}" if a.template else "")
            + ("" if a.accepted else f": {a.reason_code}: {a.reason}"),
        )
        add(entry, written=a.recorded_at)
    if view.delivered_at:
        add(
            TimelineEntry(
                at=view.delivered_at, event="delivered", detail=f"by {view.delivery.method}"
            )
        )
    if view.closed_at:
        add(TimelineEntry(at=view.closed_at, event=view.status, detail=view.close_reason or ""))
    if view.csat is not None and view.csat.answered_at is not None:
        # The ask itself is the "sent csat" delivery above.
        add(
            TimelineEntry(
                at=view.csat.answered_at,
                event="customer rated the answer",
                detail=f"{view.csat.score}/5",
            )
        )
    lines.sort(key=lambda line: line[0].at)
    entries = [entry for entry, _, _ in lines]
    # Stable: entries written at the same moment keep their time order.
    lines.sort(key=lambda line: line[1])
    return Timeline(
        entries=entries,
        live=[entry for entry, _, _ in lines],
        written=[written for _, written, _ in lines],
        pending=[pending for _, _, pending in lines],
    )
