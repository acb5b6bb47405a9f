"""``GET /v1/notifications`` a page at a time (keyset on the id, newest first).

It builds the same views as the read model (``read_model.notification_view``);
``starter.list_notifications`` (the CLI's, limit only) is unchanged.
"""

from __future__ import annotations

from sqlalchemy import select

from notifyflow import csat
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerVersion, Notification, NotificationAnswer
from notifyflow.models.errors import NotificationError, RefusalCode
from notifyflow.models.notification import NotificationStatus, NotificationType
from notifyflow.models.pages import (
    DEFAULT_PAGE_SIZE,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    int_key,
)
from notifyflow.models.views import NotificationView
from notifyflow.read_model import notification_view


async def list_notifications_page(
    db: SessionFactory,
    *,
    status: str | None = None,
    type: str | None = None,
    merchant_id: int | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[NotificationView]:
    if status is not None and status not in NotificationStatus.__members__:
        raise NotificationError(RefusalCode.invalid_input, f"unknown status {status!r}")
    if type is not None and type not in NotificationType.__members__:
        raise NotificationError(RefusalCode.unknown_type, f"unknown notification type {type!r}")
    check_limit(limit)
    before = int_key(decode_cursor("notifications", cursor))
    query = select(Notification).order_by(Notification.id.desc()).limit(limit + 1)
    if status:
        query = query.where(Notification.status == status)
    if type:
        query = query.where(Notification.type == type)
    if merchant_id is not None:
        query = query.where(Notification.merchant_id == merchant_id)
    if before is not None:
        query = query.where(Notification.id < before[0])
    async with db() as session:
        rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
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
        # The corrections of delivered answers (DESIGN §10), shown in answers[] too.
        versions = (
            (
                await session.scalars(
                    select(AnswerVersion)
                    .where(AnswerVersion.notification_id.in_(ids))
                    .order_by(AnswerVersion.notification_id, AnswerVersion.version)
                )
            ).all()
            if ids
            else []
        )
        ratings = await csat.views(session, ids)
    by_id: dict[int, list[NotificationAnswer]] = {}
    for a in answers:
        by_id.setdefault(a.notification_id, []).append(a)
    versions_of: dict[int, list[AnswerVersion]] = {}
    for v in versions:
        versions_of.setdefault(v.notification_id, []).append(v)
    items = [
        notification_view(r, [], by_id.get(r.id, []), None, versions_of.get(r.id, [])) for r in rows
    ]
    for item, r in zip(items, rows, strict=True):
        item.csat = ratings.get(r.id)
    next_cursor = encode_cursor("notifications", [rows[-1].id]) if more and rows else None
    return Page[NotificationView](items=items, next_cursor=next_cursor)
