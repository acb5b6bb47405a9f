"""Who is asked: the routing of a notification to merchant users (a support request classified
by the AI against the merchant's SupportClassification documents), and the recipients, their
instruction messages and the routing result written in one transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError

from notifyflow import answer_templates
from notifyflow.activities.common import fall_back, non_retryable
from notifyflow.ai.base import AIError, AIProvider, Classification, SupportCategory
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    AnswerTemplate,
    Document,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.models.answer_templates import MAX_QUICK_CODES, quick_answers_line
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
    NotificationType,
)
from notifyflow.models.vocabulary import MessageRole
from notifyflow.outreach.members import Member, merchant_users
from notifyflow.outreach.service import Outreach

log = logging.getLogger(__name__)

SUPPORT_CATEGORY = "SupportClassification"
ADMIN = "admin"


def instruction_text(
    notification: Notification, support_type: str | None, quick_codes: Sequence[str] = ()
) -> str:
    """The assistant instruction written into each recipient's conversation; with the
    merchant's answer templates for the type (most used first), the codes to answer with."""
    cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
    public = format_notification_id(notification.id)
    lines = [f"{public} · {notification.type}"]
    for field in cfg.requested_fields:
        lines.append(f"{field}: {notification.context.get(field, '')}")
    if support_type:
        lines.append(f"support_request_type: {support_type}")
    example = {f: "…" for f in cfg.answered_fields}
    lines += [
        "",
        f'To answer, call AnswerNotificationTool(notification_id="{public}", answer_json=...) '
        "with answer_json a JSON object matching this schema:",
        json.dumps(notification.answer_schema, ensure_ascii=False, sort_keys=True),
        f"Example: {json.dumps(example, ensure_ascii=False)}",
    ]
    if quick_codes:
        lines += [
            "",
            f"{quick_answers_line(list(quick_codes))} (reply with one, or call "
            f'AnswerNotificationTool(notification_id="{public}", template="{quick_codes[0]}"))',
        ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Routed:
    """The notification as opened: who is asked, who else may answer (the admins)."""

    notification: Notification
    merchant: Merchant
    chosen: list[MerchantUser]
    admins: list[MerchantUser]
    members: dict[int, Member]
    support_type: str | None


class Router:
    """Decides and records who is asked about a notification."""

    def __init__(self, db: SessionFactory, ai: AIProvider, outreach: Outreach) -> None:
        self._db = db
        self._ai = ai
        self._outreach = outreach

    async def load(self, notification_id: int) -> tuple[Notification, Merchant, list[MerchantUser]]:
        """A notification, its merchant and the merchant's users."""
        async with self._db() as session:
            notification = await session.get(Notification, notification_id)
            assert notification is not None
            merchant = await session.get(Merchant, notification.merchant_id)
            assert merchant is not None
        return notification, merchant, await merchant_users(self._db, merchant.id)

    async def route(self, notification_id: int) -> Routed:
        """The first routing, or on a retry the one an earlier attempt recorded."""
        async with self._db() as session:
            # The quick answers of the instruction message ride on this read (an outer join
            # on the merchant's templates for the type): no statement of their own.
            loaded = (
                await session.execute(
                    select(Notification, Merchant, AnswerTemplate.code)
                    .join(Merchant, Merchant.id == Notification.merchant_id)
                    .outerjoin(
                        AnswerTemplate,
                        and_(
                            AnswerTemplate.merchant_id == Notification.merchant_id,
                            AnswerTemplate.type == Notification.type,
                        ),
                    )
                    .where(Notification.id == notification_id)
                    .order_by(AnswerTemplate.use_count.desc(), AnswerTemplate.code)
                    .limit(MAX_QUICK_CODES)
                )
            ).all()
            if not loaded:
                raise non_retryable(f"notification {notification_id} does not exist")
            notification, merchant, _ = loaded[0]
            codes = [row[2] for row in loaded if row[2] is not None]
            if notification.status != NotificationStatus.requested.value:
                # Closed while its workflow was starting (an operator's close of an orphan):
                # nobody is to be asked any more.
                raise non_retryable(
                    f"{format_notification_id(notification.id)} is {notification.status}"
                )
            # Departed (deactivated) users are neither asked nor allowed to answer.
            users = list(
                (
                    await session.scalars(
                        select(MerchantUser).where(
                            MerchantUser.merchant_id == merchant.id,
                            MerchantUser.deactivated_at.is_(None),
                        )
                    )
                ).all()
            )
            recorded = list(
                (
                    await session.scalars(
                        select(NotificationRecipient).where(
                            NotificationRecipient.notification_id == notification.id
                        )
                    )
                ).all()
            )
            categories: list[SupportCategory] = []
            if not recorded and notification.type == NotificationType.user_support_request:
                docs = (
                    await session.scalars(
                        select(Document).where(
                            Document.merchant_id == merchant.id,
                            Document.category == SUPPORT_CATEGORY,
                        )
                    )
                ).all()
                categories = [
                    SupportCategory(user_type=d.title.strip().lower(), description=d.content)
                    for d in docs
                ]

        admins = [u for u in users if u.user_type == ADMIN]
        support_type: str | None = notification.context.get("support_request_type")
        if recorded:
            # A retry: routing was decided and written by an earlier attempt.
            chosen_ids = [r.merchant_user_id for r in recorded]
            chosen = [u for u in users if u.id in chosen_ids]
            members = await self._outreach.members(merchant, chosen)
        else:
            chosen = admins
            if notification.type == NotificationType.user_support_request:
                target_type = ADMIN
                if categories:
                    classification = await self._classify(notification, categories)
                    target_type = classification.user_type
                    support_type = classification.readable_type
                typed = [u for u in users if u.user_type == target_type]
                # No user of the classified type: fall back to the admins.
                chosen = typed or admins
                support_type = support_type or "General"
            if notification.priority == "urgent":
                # Urgent (DESIGN §10): the on-call users are asked at once, with the first
                # fan-out, not only at escalation.
                chosen = chosen + [u for u in users if u.on_call and u not in chosen]
            members = await self.add_recipients(
                notification,
                merchant,
                chosen,
                "initial",
                support_type=support_type,
                quick_codes=codes,
            )
        return Routed(notification, merchant, chosen, admins, members, support_type)

    async def _classify(
        self, notification: Notification, categories: list[SupportCategory]
    ) -> Classification:
        try:
            return await self._ai.classify_support(
                str(notification.context.get("support_request_reason", "")), categories
            )
        except AIError as err:
            if not fall_back(err):
                raise
            log.warning("classification failed (%s); routing to the admins", err)
            return Classification(ADMIN, "General")

    async def add_recipients(
        self,
        notification: Notification,
        merchant: Merchant,
        users: list[MerchantUser],
        reason: str,
        *,
        support_type: str | None,
        quick_codes: Sequence[str] | None = None,
    ) -> dict[int, Member]:
        """Recipients, their instruction messages and the routing result, in one transaction.
        Returns each recipient's own conversation. ``quick_codes``: the merchant's answer
        template codes for the type, read here when the caller has not read them."""
        members = await self._outreach.members(merchant, users)
        notification_id = notification.id
        async with self._db() as session:
            if quick_codes is None:
                quick_codes = list(
                    (
                        await session.scalars(
                            answer_templates.quick_codes(merchant.id, notification.type)
                        )
                    ).all()
                )
            instruction = instruction_text(notification, support_type, quick_codes)
            public = format_notification_id(notification_id)
            for member in members.values():
                session.add(
                    NotificationRecipient(
                        notification_id=notification_id,
                        merchant_user_id=member.user.id,
                        conversation_id=member.conversation.id,
                        reason=reason,
                    )
                )
                session.add(
                    Message(
                        conversation_id=member.conversation.id,
                        role=MessageRole.assistant,
                        content=instruction,
                        other_data={
                            "kind": "notification_instruction",
                            "notification_id": notification_id,
                            "notification_ids": [public],
                        },
                    )
                )
            context = dict(notification.context)
            if support_type and notification.type == NotificationType.user_support_request:
                context["support_request_type"] = support_type
            values: dict[str, Any] = {"updated_at": utcnow()}
            if reason == "initial":
                # The workflow's first step: it is running, the sweeper need not look at it.
                values["workflow_started_at"] = values["updated_at"]
            context["merchant_user_conversation_user_ids"] = sorted(
                {
                    *context.get("merchant_user_conversation_user_ids", []),
                    *(m.conversation.conversation_user_id for m in members.values()),
                }
            )
            await session.execute(
                update(Notification)
                .where(Notification.id == notification_id)
                .values(context=context, **values)
            )
            try:
                await session.commit()
            except IntegrityError:
                # An earlier attempt wrote them (same notification, same users): keep those.
                await session.rollback()
            else:
                notification.context = context
        return members
