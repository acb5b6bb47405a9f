"""Who is asked: the routing of a notification to merchant users (a support request classified
by the AI against the merchant's SupportClassification documents), and the recipients, their
instruction messages and the routing result written in one transaction."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.exc import IntegrityError

from notifyflow import answer_templates
from notifyflow.activities.common import fall_back, non_retryable
from notifyflow.ai.base import AIError, AIProvider, Classification, SupportCategory
from notifyflow.db.session import SessionFactory, autocommit
from notifyflow.db.statements import (
    bind_update,
    dialect_name,
    execute,
    factory_dialect,
    insert_rows,
)
from notifyflow.db.tables import (
    Conversation,
    Document,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.models.answer_templates import quick_answers_line
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    NotificationStatus,
    NotificationType,
)
from notifyflow.models.vocabulary import MessageRole
from notifyflow.outreach.members import (
    Member,
    Roster,
    is_active_user_of,
    join_own_conversation,
    merchant_users,
)
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
    # What the first routing decided, to be written with the claim of its sends (empty on a
    # retry: an earlier attempt wrote it).
    writes: list[Any] = dataclass_field(default_factory=list)


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
            await autocommit(session)  # reads only
            rows = (
                await session.execute(_route_load(), {"notification_id": notification_id})
            ).all()
            if not rows:
                raise non_retryable(f"notification {notification_id} does not exist")
            notification, merchant = rows[0][0], rows[0][1]
            codes = answer_templates.parse_quick_codes(rows[0][5])
            if notification.status != NotificationStatus.requested.value:
                # Closed while its workflow was starting (an operator's close of an orphan):
                # nobody is to be asked any more.
                raise non_retryable(
                    f"{format_notification_id(notification.id)} is {notification.status}"
                )
            # Departed (deactivated) users are neither asked nor allowed to answer.
            roster = Roster.of([(r[2], r[3]) for r in rows])
            users = roster.users
            recorded = {r[2].id for r in rows if r[4] is not None}
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
            chosen = [u for u in users if u.id in recorded]
            members = await self._outreach.members(merchant, chosen, roster.known)
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
            members = await self._outreach.members(merchant, chosen, roster.known)
            # Recorded with the ledger's claim of the requests (open_notification): one
            # transaction, one statement on PostgreSQL.
            writes = recipient_writes(
                factory_dialect(self._db), notification, members, "initial", support_type, codes
            )
            notification.context = writes.context
            return Routed(
                notification, merchant, chosen, admins, members, support_type, writes.statements
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
        known: Mapping[int, Member] | None = None,
    ) -> dict[int, Member]:
        """Recipients, their instruction messages and the routing result, in one transaction
        of their own (escalation). Returns each recipient's own conversation."""
        members = await self._outreach.members(merchant, users, known)
        async with self._db() as session:
            # The quick answers for the instruction message: one indexed read (escalation
            # only; the first routing reads them with the notification).
            codes = list(
                (
                    await session.scalars(
                        answer_templates.quick_codes(merchant.id, notification.type)
                    )
                ).all()
            )
            writes = recipient_writes(
                dialect_name(session), notification, members, reason, support_type, codes
            )
            try:
                for stmt in writes.statements:
                    await execute(session, stmt)
                await session.commit()
            except IntegrityError:
                # An earlier attempt wrote them (same notification, same users): keep those.
                # The insert itself raises it (the unique recipient), not only the commit.
                await session.rollback()
            else:
                notification.context = writes.context
        return members


@functools.cache
def _route_load() -> Any:
    """One statement: the notification, its merchant, the merchant's active users with their
    own conversations, which of them an earlier attempt recorded, and the instruction
    message's quick answers. Built once, the id a bound parameter: building the construct and
    its cache key per call cost more worker CPU than executing it."""
    return (
        join_own_conversation(
            select(
                Notification,
                Merchant,
                MerchantUser,
                Conversation,
                NotificationRecipient.id,
                answer_templates.quick_codes_column(),
            )
            .join(Merchant, Merchant.id == Notification.merchant_id)
            .outerjoin(MerchantUser, is_active_user_of(Merchant.id))
        )
        .outerjoin(
            NotificationRecipient,
            and_(
                NotificationRecipient.notification_id == Notification.id,
                NotificationRecipient.merchant_user_id == MerchantUser.id,
            ),
        )
        .where(Notification.id == bindparam("notification_id"))
        .order_by(MerchantUser.id)
    )


@dataclass(frozen=True)
class RecipientWrites:
    """The statements that record who is asked: recipients, their instruction messages, the
    routing result on the notification (its new ``context``)."""

    statements: list[Any]
    context: dict[str, Any]


def recipient_writes(
    dialect: str,
    notification: Notification,
    members: Mapping[int, Member],
    reason: str,
    support_type: str | None,
    quick_codes: Sequence[str] = (),
) -> RecipientWrites:
    """Core statements with every value given (they may ride in one statement with the
    ledger's claim: :class:`~notifyflow.db.statements.Writes`)."""
    now = utcnow()
    notification_id = notification.id
    public = format_notification_id(notification_id)
    statements: list[Any] = []
    if members:
        instruction = instruction_text(notification, support_type, quick_codes)
        statements.append(
            insert_rows(
                dialect,
                NotificationRecipient,
                [
                    {
                        "notification_id": notification_id,
                        "merchant_user_id": m.user.id,
                        "conversation_id": m.conversation.id,
                        "reason": reason,
                        "added_at": now,
                    }
                    for m in members.values()
                ],
            )
        )
        statements.append(
            insert_rows(
                dialect,
                Message,
                [
                    {
                        "conversation_id": m.conversation.id,
                        "role": MessageRole.assistant.value,
                        "content": instruction,
                        "other_data": {
                            "kind": "notification_instruction",
                            "notification_id": notification_id,
                            "notification_ids": [public],
                        },
                        "created_at": now,
                    }
                    for m in members.values()
                ],
            )
        )
    context = dict(notification.context)
    if support_type and notification.type == NotificationType.user_support_request:
        context["support_request_type"] = support_type
    values: dict[str, Any] = {"updated_at": now}
    if reason == "initial":
        # The workflow's first step: it is running, the sweeper need not look at it.
        values["workflow_started_at"] = now
    context["merchant_user_conversation_user_ids"] = sorted(
        {
            *context.get("merchant_user_conversation_user_ids", []),
            *(m.conversation.conversation_user_id for m in members.values()),
        }
    )
    statements.append(
        bind_update(
            Notification,
            where="id",
            key=notification_id,
            values={"context": context, **values},
            name="routed",
        )
    )
    return RecipientWrites(statements, context)
