"""The answer history's one writer of refused answers: every attempt joins it, whether the
workflow refused it (the ``answer`` signal from the Temporal UI) or the client API did before
it reached the workflow (an access check)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import MerchantUser, Notification, NotificationAnswer

MAX_ANSWER_TEXT = 20000


async def record_refused_answer(
    db: SessionFactory,
    *,
    notification_id: int,
    answered_by: int | None,
    source: str,
    text: str,
    code: str,
    reason: str,
    at: datetime,
    once: bool = False,
    template_code: str | None = None,
) -> None:
    """Write one refused attempt. ``once``: skip it when the same refusal (same time, same
    code) is already there, for a retried activity. The claimed answerer may not exist at all
    (ids are guessable): the claim is kept in the reason rather than break the foreign key."""
    async with db() as session:
        if once:
            exists = await session.scalar(
                select(NotificationAnswer.id).where(
                    NotificationAnswer.notification_id == notification_id,
                    NotificationAnswer.accepted.is_(False),
                    NotificationAnswer.created_at == at,
                    NotificationAnswer.reason_code == code,
                )
            )
            if exists is not None:
                return
        if await session.get(Notification, notification_id) is None:
            return
        known = answered_by is not None and await session.get(MerchantUser, answered_by) is not None
        if not known and answered_by is not None:
            reason = f"{reason} (claimed by unknown user {answered_by})"
        session.add(
            NotificationAnswer(
                notification_id=notification_id,
                answered_by=answered_by if known else None,
                source=source,
                answer_text=text[:MAX_ANSWER_TEXT],
                accepted=False,
                reason_code=code,
                reason=reason,
                created_at=at,
                # Only a well-formed code: what was refused is in answer_text anyway.
                template_code=template_code if template_code and len(template_code) <= 32 else None,
            )
        )
        await session.commit()
