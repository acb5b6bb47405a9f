"""What an accepted answer becomes before it reaches the customer: the customer's words
(localized by the AI, or the admin's own when the AI fails), the answer row, the status and, for
a question, the knowledge-base Document — written in one transaction."""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from temporalio import activity

from notifyflow import worker_metrics
from notifyflow.activities.common import fall_back, non_retryable
from notifyflow.ai.base import AIError, AIProvider, ChatTurn, Localized
from notifyflow.db.session import SessionFactory, autocommit
from notifyflow.db.statements import (
    Bound,
    bind_update,
    dialect_name,
    execute,
    factory_dialect,
    insert_rows,
)
from notifyflow.db.tables import (
    Conversation,
    ConversationUser,
    Document,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationAnswer,
)
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationStatus, NotificationType, headline
from notifyflow.models.vocabulary import MessageRole
from notifyflow.models.workflow_io import DeliverInput, FinishInput
from notifyflow.outreach.contacts import CustomerContact, load_contact
from notifyflow.outreach.members import Roster, is_active_user_of, join_own_conversation
from notifyflow.outreach.policy import Outcome
from notifyflow.webhooks import events as webhook_events

log = logging.getLogger(__name__)

HISTORY_TURNS = 20


class Answers:
    """Localizes, composes and records answers."""

    def __init__(self, db: SessionFactory, ai: AIProvider) -> None:
        self._db = db
        self._ai = ai

    async def localize(self, text: str, language: str) -> Localized:
        try:
            return await self._ai.localize(text, language)
        except AIError as err:
            if not fall_back(err):
                raise
            # Documented fallback: the admin's own words reach the customer.
            log.warning(
                "localization failed %d times; delivering the admin's own words",
                activity.info().attempt,
            )
            cleaned = " ".join(text.split())
            return Localized(cleaned, cleaned)

    async def compose(
        self,
        conversation: Conversation,
        answer: str,
        language: str,
        history: list[ChatTurn] | None = None,
    ) -> str:
        """The free-form reply, written for the conversation so far (``history``: its latest
        turns, read here when not given); the localized answer as it is when the AI fails."""
        if history is None:
            async with self._db() as session:
                rows = (await session.scalars(_latest_turns(conversation.id))).all()
            history = [ChatTurn(role=m.role, content=m.content) for m in reversed(rows)]
        try:
            return await self._ai.compose_reply(history, answer, language)
        except AIError as err:
            if not fall_back(err):
                raise
            log.warning("reply composition failed; sending the localized answer as is")
            return answer

    async def record(
        self,
        notification: Notification,
        input: DeliverInput,
        text: str,
        localized: Localized,
        *,
        first: bool,
        subscriptions: int | None = None,
    ) -> None:
        """The accepted answer, the status, the localized words (kept, so a retry sends the
        same text) and, for a question, the knowledge-base Document, in one transaction."""
        values: dict[str, Any] = {
            "localized_fragment": localized.continuation_fragment,
            "localized_sentence": localized.full_sentence,
            "updated_at": utcnow(),
        }
        async with self._db() as session:
            if first:
                session.add(NotificationAnswer(**_accepted_answer(notification, input)))
                values.update(_answered(input))
                if notification.type == NotificationType.user_question_request:
                    values["document_id"] = await _apply_to_document(session, notification, text)
                await webhook_events.enqueue(
                    session,
                    notification_id=notification.id,
                    merchant_id=notification.merchant_id,
                    event=webhook_events.EventType.answered,
                    subscriptions=subscriptions,
                )
                count_first_answer(notification, input.answered_at)
            await session.execute(
                update(Notification).where(Notification.id == notification.id).values(**values)
            )
            await session.commit()

    @staticmethod
    def rides_with_claim(
        notification: Notification, *, first: bool, document_exists: bool, subscriptions: int
    ) -> bool:
        """False when the answer needs :meth:`record`'s own transaction: the merchant has
        webhooks (their events are read and written there), or the question's Document has
        gone missing (it is written anew there)."""
        question = notification.type == NotificationType.user_question_request
        return not (first and (subscriptions or (question and not document_exists)))

    def statements(
        self,
        notification: Notification,
        input: DeliverInput,
        text: str,
        localized: Localized,
        *,
        first: bool,
    ) -> list[Any]:
        """What :meth:`record` writes, as statements with every value given, to be committed
        with the ledger's claim of the customer's message (one statement on PostgreSQL), for
        an answer that :meth:`rides_with_claim`. Built at the claim: the accepted answer is
        stamped as written then."""
        question = notification.type == NotificationType.user_question_request
        now = utcnow()
        dialect = factory_dialect(self._db)
        values: dict[str, Any] = {
            "localized_fragment": localized.continuation_fragment,
            "localized_sentence": localized.full_sentence,
            "updated_at": now,
        }
        statements: list[Any] = []
        if first:
            statements.append(
                insert_rows(dialect, NotificationAnswer, [_accepted_answer(notification, input)])
            )
            values.update(_answered(input))
            if question:
                statements.append(
                    bind_update(
                        Document,
                        where="id",
                        key=notification.document_id,
                        values={"content": text, "updated_at": now},
                        name="document",
                    )
                )
        statements.append(
            bind_update(
                Notification, where="id", key=notification.id, values=values, name="answered"
            )
        )
        return statements


def _accepted_answer(notification: Notification, input: DeliverInput) -> dict[str, Any]:
    """The accepted answer's row in the answer history."""
    return {
        "notification_id": notification.id,
        "answered_by": input.answered_by,
        "source": input.source.value,
        "answer_text": json.dumps(input.answer, ensure_ascii=False),
        "accepted": True,
        "single_answer": not notification.allow_multiple_answers,
        "created_at": input.answered_at,
        # Before the claim's own time: the answer comes before its sends in the live stream.
        "recorded_at": utcnow(),
        "template_code": input.template,
    }


def _answered(input: DeliverInput) -> dict[str, Any]:
    """What the first accepted answer sets on the notification."""
    return {
        "status": NotificationStatus.answered.value,
        "answered_by": input.answered_by,
        "answered_at": input.answered_at,
    }


def count_first_answer(notification: Notification, answered_at: datetime) -> None:
    """Time to first answer, and whether it came within the merchant's target (SLA)."""
    priority = notification.priority or "normal"
    worker_metrics.observe_seconds(
        "notifyflow_time_to_first_answer_seconds",
        "From request to the first accepted answer",
        (answered_at - notification.created_at).total_seconds(),
        {
            "type": notification.type,
            "priority": priority,
            "merchant": str(notification.merchant_id),
        },
    )
    due = notification.first_answer_due_at
    if due is None:
        return
    within = answered_at <= due
    labels = {"merchant": str(notification.merchant_id), "priority": priority}
    worker_metrics.count(
        "notifyflow_first_answers",
        "First answers, by merchant, priority and whether within the target",
        {**labels, "within_target": "true" if within else "false"},
    )
    if not within:
        worker_metrics.count("notifyflow_sla_breaches", "First-answer targets missed", labels)


def _count_end(status: str) -> None:
    worker_metrics.count(
        "notifyflow_notifications_ended",
        "Notifications that reached a terminal state",
        {"status": status},
    )


async def _apply_to_document(session: AsyncSession, notification: Notification, answer: str) -> int:
    """The question and its answer join the merchant's knowledge base: one UPDATE of the
    question's Document. A Document that has gone missing is written anew rather than losing
    the Q&A."""
    if notification.document_id is not None:
        updated = await session.execute(
            update(Document)
            .where(Document.id == notification.document_id)
            .values(content=answer, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if updated.rowcount:  # type: ignore[attr-defined]
            return notification.document_id
    log.warning(
        "%s: its UserQuestion document is missing; recreating it",
        format_notification_id(notification.id),
    )
    document = Document(
        merchant_id=notification.merchant_id,
        category="UserQuestion",
        title=headline(notification.type, notification.context),
        content=answer,
    )
    session.add(document)
    await session.flush()
    return document.id


def _latest_turns(conversation_id: Any) -> Any:
    """The conversation's latest turns (user and assistant), newest first."""
    return (
        select(Message)
        .where(
            Message.conversation_id == conversation_id,
            Message.role.in_((MessageRole.user, MessageRole.assistant)),
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(HISTORY_TURNS)
    )


@functools.cache
def _turns_column(dialect: str) -> Any:
    """The customer conversation's latest turns as one JSON array of [role, content], newest
    first: a scalar subquery of the delivery load, so the free-form reply's composition needs
    no statement of its own. Built once per dialect (constructs are immutable; building one
    per delivery cost column proxies every time, like the aliases below)."""
    latest = (
        select(Message.role, Message.content, Message.created_at, Message.id)
        .where(
            Message.conversation_id == Notification.conversation_id,
            Message.role.in_((MessageRole.user, MessageRole.assistant)),
        )
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(HISTORY_TURNS)
        .correlate(Notification)
        .subquery("turns")
    )
    pair = func.json_build_array if dialect == "postgresql" else func.json_array
    if dialect == "postgresql":
        agg = func.json_agg(
            aggregate_order_by(
                pair(latest.c.role, latest.c.content),
                latest.c.created_at.desc(),
                latest.c.id.desc(),
            )
        )
    else:
        # SQLite aggregates in the subquery's order.
        agg = func.json_group_array(pair(latest.c.role, latest.c.content))
    # As text: the value repeats on every user row of the load, and is parsed once, here.
    return select(cast(agg, Text)).scalar_subquery()


# The customer's side of the delivery load (the merchant users' conversations are the plain
# entities). Built once: an alias made per call costs column proxies every time.
_CUSTOMER_CONVERSATION = aliased(Conversation, name="customer_conversation")
_CUSTOMER = aliased(ConversationUser, name="customer")


@dataclass(frozen=True)
class ForDelivery:
    """A notification with what its delivery needs, and whether its answer is recorded."""

    notification: Notification
    contact: CustomerContact
    recorded: bool
    # The merchant's active users and their conversations (closure notices go to them).
    roster: Roster
    # Whether the question's knowledge-base Document is there to be filled in.
    document_exists: bool = False
    # The customer conversation's latest turns, oldest first (for the free-form reply).
    turns: list[ChatTurn] = field(default_factory=list)


@functools.cache
def _delivery_load(dialect: str) -> Any:
    """:func:`load_for_delivery`'s statement, built once per dialect with the notification
    and the answer's time as bound parameters (building it and its cache key per delivery
    cost more worker CPU than executing it)."""
    already = (
        select(NotificationAnswer.id)
        .where(
            NotificationAnswer.notification_id == Notification.id,
            NotificationAnswer.accepted.is_(True),
            NotificationAnswer.created_at
            == bindparam("answered_at", type_=NotificationAnswer.created_at.type),
        )
        .exists()
    )
    customer_conversation, customer = _CUSTOMER_CONVERSATION, _CUSTOMER
    return (
        join_own_conversation(
            select(
                Notification,
                customer_conversation,
                Merchant,
                customer,
                already,
                MerchantUser,
                Conversation,
                Document.id,
                _turns_column(dialect),
            )
            .join(
                customer_conversation,
                customer_conversation.id == Notification.conversation_id,
            )
            .join(Merchant, Merchant.id == Notification.merchant_id)
            .join(customer, customer.id == customer_conversation.conversation_user_id)
            .outerjoin(Document, Document.id == Notification.document_id)
            .outerjoin(MerchantUser, is_active_user_of(Merchant.id))
        )
        .where(Notification.id == bindparam("notification_id"))
        .order_by(MerchantUser.id)
    )


async def load_for_delivery(db: SessionFactory, input: DeliverInput) -> ForDelivery:
    """One statement: the notification with its customer, merchant and whether this answer
    is recorded already (a retry), and the merchant's users with their own conversations."""
    async with db() as session:
        await autocommit(session)  # one read
        rows = (
            await session.execute(
                _delivery_load(dialect_name(session)),
                {"notification_id": input.notification_id, "answered_at": input.answered_at},
            )
        ).all()
    if not rows:
        raise non_retryable(f"notification {input.notification_id} does not exist")
    notification, conversation, merchant, person, recorded = rows[0][:5]
    contact = CustomerContact(merchant, conversation, person)
    roster = Roster.of([(r[5], r[6]) for r in rows])
    raw = rows[0][8]
    latest = json.loads(raw) if raw else []
    turns = [ChatTurn(role=role, content=content) for role, content in reversed(latest)]
    return ForDelivery(notification, contact, bool(recorded), roster, rows[0][7] is not None, turns)


def outcome_statement(notification_id: int, outcome: Outcome, *, returning: bool = False) -> Bound:
    """Delivered (by which method) or delivery_failed (why), unless an earlier attempt
    recorded the outcome: only the first record counts (a retried delivery, the same sends
    answered by the ledger, must not write a second webhook event or count twice). With
    ``returning``, the notification's id comes back when it changed."""
    status = NotificationStatus.delivered if outcome.ok else NotificationStatus.delivery_failed
    now = utcnow()
    return Bound(
        _outcome_update(returning),
        {
            "outcome__id": notification_id,
            "outcome__status": status.value,
            "outcome__delivery_method": outcome.method,
            "outcome__failure_reason": outcome.reason,
            "outcome__delivered_at": now if outcome.ok else None,
            "outcome__updated_at": now,
        },
        static=True,
    )


@functools.cache
def _outcome_update(returning: bool) -> Any:
    table: Any = Notification.__table__
    stmt = (
        update(table)
        .where(
            table.c.id == bindparam("outcome__id", type_=table.c.id.type),
            table.c.status.not_in(
                [NotificationStatus.delivered.value, NotificationStatus.delivery_failed.value]
            ),
        )
        .values(
            {
                name: bindparam(f"outcome__{name}", type_=table.c[name].type)
                for name in (
                    "status",
                    "delivery_method",
                    "failure_reason",
                    "delivered_at",
                    "updated_at",
                )
            }
        )
    )
    return stmt.returning(table.c.id) if returning else stmt


def count_outcome(outcome: Outcome) -> None:
    _count_end(
        (NotificationStatus.delivered if outcome.ok else NotificationStatus.delivery_failed).value
    )


async def record_outcome(
    db: SessionFactory,
    notification_id: int,
    merchant_id: int,
    outcome: Outcome,
    *,
    subscriptions: int | None = None,
) -> None:
    """The outcome (:func:`outcome_statement`) in a transaction of its own, and its webhook
    event."""
    status = NotificationStatus.delivered if outcome.ok else NotificationStatus.delivery_failed
    async with db() as session:
        changed = await execute(session, outcome_statement(notification_id, outcome))
        first = bool(changed.rowcount)  # type: ignore[attr-defined]
        if first:
            await webhook_events.enqueue(
                session,
                notification_id=notification_id,
                merchant_id=merchant_id,
                event=webhook_events.event_for_status(status.value),
                subscriptions=subscriptions,
            )
        await session.commit()
    if first:
        _count_end(status.value)


async def record_end(db: SessionFactory, input: FinishInput) -> CustomerContact | None:
    """The notification's final status, unless it has one already; None when it does not
    exist (a workflow started for a row that was never written: nothing to close)."""
    async with db() as session:
        notification = await session.get(Notification, input.notification_id)
        if notification is None:
            return None
        if not NotificationStatus(notification.status).is_terminal:
            notification.status = input.status.value
            notification.closed_at = utcnow()
            notification.close_reason = input.reason
            if input.status is NotificationStatus.delivery_failed:
                notification.failure_reason = input.reason
            await webhook_events.enqueue(
                session,
                notification_id=notification.id,
                merchant_id=notification.merchant_id,
                event=webhook_events.event_for_status(input.status.value),
            )
            await session.commit()
            _count_end(input.status.value)
            due = notification.first_answer_due_at
            if input.status.value == "expired" and due is not None and utcnow() > due:
                worker_metrics.count(
                    "notifyflow_sla_breaches",
                    "First-answer targets missed",
                    {
                        "merchant": str(notification.merchant_id),
                        "priority": notification.priority or "normal",
                    },
                )
        return await load_contact(session, notification)
