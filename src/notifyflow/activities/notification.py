"""The notification lifecycle's activities: open (route + fan out), follow up (remind,
escalate), deliver the answer, finish (expire or close), record a refused answer."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from notifyflow.activities.sending import Sender, Target
from notifyflow.activities.templates import TemplateMissing, find_template, render
from notifyflow.ai.base import (
    AIConfigError,
    AIError,
    AIProvider,
    ChatTurn,
    Classification,
    Localized,
    SupportCategory,
)
from notifyflow.channels.base import SendError
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Conversation,
    ConversationUser,
    Document,
    Merchant,
    MerchantUser,
    Message,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.logs import log_context
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    Campaign,
    NotificationStatus,
    NotificationType,
    closure_notice,
)
from notifyflow.models.vocabulary import (
    ChannelName,
    DeliveryKind,
    MessageRole,
    RecipientKind,
    SendMethod,
)
from notifyflow.models.workflow_io import (
    DeliverInput,
    DeliverResult,
    FinishInput,
    FollowUpInput,
    FollowUpKind,
    FollowUpResult,
    OpenInput,
    OpenResult,
    RecordRejectionInput,
)
from notifyflow.outreach import keys

log = logging.getLogger(__name__)
R = TypeVar("R")

WINDOW = timedelta(hours=24)
# Well under the workflow's heartbeat timeout (policies.HEARTBEAT_TIMEOUT).
HEARTBEAT_EVERY = 5.0
INSTAGRAM_HUMAN_AGENT_WINDOW = timedelta(days=7)
# After this many failed attempts of an AI step, fall back to the admin's own words.
AI_ATTEMPTS_BEFORE_FALLBACK = 3
HISTORY_TURNS = 20
SUPPORT_CATEGORY = "SupportClassification"
EXPIRY_MESSAGE = (
    "We are sorry: our team could not get back to you about your request in time. "
    "Please write to us again if you still need help."
)


SHORTENED_LIMIT = 300


def shortened_variable(text: str) -> str:
    """Printable characters only, single spaces, at most SHORTENED_LIMIT characters, cut at a
    word boundary: what any approved template accepts as a variable."""
    plain = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(plain) <= SHORTENED_LIMIT:
        return plain or "-"
    cut = plain[: SHORTENED_LIMIT - 1]
    return (cut[: cut.rfind(" ")] if " " in cut else cut).rstrip(" ,;:") + "…"


def fall_back(err: AIError) -> bool:
    """Take the documented fallback now (a configuration error, or retries used up), rather
    than let Temporal retry the AI step again."""
    return isinstance(err, AIConfigError) or activity.info().attempt >= AI_ATTEMPTS_BEFORE_FALLBACK


def with_log_context(fn: Callable[[Any, Any], Awaitable[R]]) -> Callable[[Any, Any], Awaitable[R]]:
    """Every log line inside an activity carries its notification id (the workflow id comes
    with ``activity.logger``'s own fields); phone numbers are masked by the log handler."""

    @functools.wraps(fn)
    async def wrapper(self: Any, input: Any) -> R:
        with log_context(notification_id=format_notification_id(input.notification_id)):
            async with heartbeating():
                return await fn(self, input)

    return wrapper


def retry_later(err: SendError) -> Exception:
    """A retryable send failure for Temporal to retry; a provider's Retry-After (429) sets the
    delay of the next attempt instead of the policy's backoff."""
    retry_after = err.extra.get("retry_after")
    try:
        delay = float(retry_after) if retry_after else None
    except ValueError:
        delay = None
    if delay is None or delay <= 0:
        return err
    return ApplicationError(
        str(err), type="RateLimited", next_retry_delay=timedelta(seconds=min(delay, 300))
    )


@contextlib.asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_EVERY) -> AsyncIterator[None]:
    """Heartbeat while the body runs, so a worker that dies mid-activity is noticed within the
    heartbeat timeout rather than the whole start-to-close timeout."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _non_retryable(message: str) -> ApplicationError:
    return ApplicationError(message, type="NonRetryable", non_retryable=True)


CONFIGURATION_ERROR = "ConfigurationError"


class ConfigurationError(ApplicationError):
    """The deployment cannot send this at all (no template for a campaign, credentials or a
    Content SID refused): retrying for a day would change nothing, so the activity fails at once
    and the workflow ends the notification with this reason for an operator to read."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"configuration error: {message}", type=CONFIGURATION_ERROR, non_retryable=True
        )


async def template_for(
    db: SessionFactory,
    campaign: str,
    language: str | None,
    merchant_id: int,
    merchant_language: str | None,
) -> Any:
    """:func:`find_template`, with a missing template turned into a ConfigurationError."""
    try:
        async with db() as session:
            return await find_template(session, campaign, language, merchant_id, merchant_language)
    except TemplateMissing as exc:
        raise ConfigurationError(str(exc)) from None


def headline(notification: Notification) -> str:
    """The question or support reason, as stored in the context."""
    cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
    return str(notification.context.get(cfg.requested_fields[0], ""))


def window_open(last_inbound: Any, now: Any, window: timedelta = WINDOW) -> bool:
    """``use_campaign`` is its negation: no inbound message, or the last older than 24 h."""
    return last_inbound is not None and now - last_inbound <= window


def instruction_text(notification: Notification, support_type: str | None) -> str:
    """The assistant instruction written into each recipient's conversation."""
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
    return "\n".join(lines)


@dataclass
class _Member:
    user: MerchantUser
    conversation: Conversation


class NotificationActivities:
    """Dependencies are built once per worker and shared by every activity call."""

    def __init__(self, db: SessionFactory, ai: AIProvider, sender: Sender) -> None:
        self._db = db
        self._ai = ai
        self._sender = sender

    # ---- open ---------------------------------------------------------------------------

    @activity.defn(name="open_notification")
    @with_log_context
    async def open_notification(self, input: OpenInput) -> OpenResult:
        async with self._db() as session:
            loaded = (
                await session.execute(
                    select(Notification, Merchant)
                    .join(Merchant, Merchant.id == Notification.merchant_id)
                    .where(Notification.id == input.notification_id)
                )
            ).first()
            if loaded is None:
                raise _non_retryable(f"notification {input.notification_id} does not exist")
            notification, merchant = loaded
            if notification.status != NotificationStatus.requested.value:
                # Closed while its workflow was starting (an operator's close of an orphan):
                # nobody is to be asked any more.
                raise _non_retryable(
                    f"{format_notification_id(notification.id)} is {notification.status}"
                )
            users = list(
                (
                    await session.scalars(
                        select(MerchantUser).where(MerchantUser.merchant_id == merchant.id)
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

        admins = [u for u in users if u.user_type == "admin"]
        support_type: str | None = notification.context.get("support_request_type")
        if recorded:
            # A retry: routing was decided and written by an earlier attempt.
            chosen_ids = [r.merchant_user_id for r in recorded]
            chosen = [u for u in users if u.id in chosen_ids]
            members = await self._members(merchant, chosen)
        else:
            chosen = admins
            if notification.type == NotificationType.user_support_request:
                target_type = "admin"
                if categories:
                    try:
                        classification = await self._ai.classify_support(
                            str(notification.context.get("support_request_reason", "")),
                            categories,
                        )
                    except AIError as err:
                        if not fall_back(err):
                            raise
                        log.warning("classification failed (%s); routing to the admins", err)
                        classification = Classification("admin", "General")
                    target_type = classification.user_type
                    support_type = classification.readable_type
                typed = [u for u in users if u.user_type == target_type]
                # No user of the classified type: fall back to the admins.
                chosen = typed or admins
                support_type = support_type or "General"
            members = await self._add_recipients(
                notification, merchant, chosen, "initial", support_type=support_type
            )

        await self._send_requests(notification, merchant, members, kind=DeliveryKind.request)
        allowed = sorted({u.id for u in chosen} | {u.id for u in admins})
        return OpenResult(
            recipients=[u.id for u in chosen], allowed_answerers=allowed, support_type=support_type
        )

    async def _members(self, merchant: Merchant, users: list[MerchantUser]) -> dict[int, _Member]:
        """Each merchant user's own conversation with the business, created when missing
        (with its ConversationUser: one per phone)."""
        if not users:
            return {}
        phones = {u.phone for u in users}
        async with self._db() as session:
            people = {
                p.phone: p
                for p in (
                    await session.scalars(
                        select(ConversationUser).where(ConversationUser.phone.in_(phones))
                    )
                ).all()
            }
            for phone in phones - set(people):
                person = ConversationUser(phone=phone)
                session.add(person)
                people[phone] = person
            try:
                await session.flush()
            except IntegrityError:
                # Another attempt created them at the same moment: read theirs.
                await session.rollback()
                return await self._members(merchant, users)
            convs = {
                c.conversation_user_id: c
                for c in (
                    await session.scalars(
                        select(Conversation).where(
                            Conversation.merchant_id == merchant.id,
                            Conversation.channel == ChannelName.whatsapp,
                            Conversation.conversation_user_id.in_([p.id for p in people.values()]),
                        )
                    )
                ).all()
            }
            out: dict[int, _Member] = {}
            for user in users:
                person = people[user.phone]
                conv = convs.get(person.id)
                if conv is None:
                    conv = Conversation(
                        merchant_id=merchant.id,
                        conversation_user_id=person.id,
                        merchant_user_id=user.id,
                        channel=ChannelName.whatsapp,
                        language=merchant.default_language,
                    )
                    session.add(conv)
                    convs[person.id] = conv
                out[user.id] = _Member(user, conv)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return await self._members(merchant, users)
            return out

    async def _add_recipients(
        self,
        notification: Notification,
        merchant: Merchant,
        users: list[MerchantUser],
        reason: str,
        *,
        support_type: str | None,
    ) -> dict[int, _Member]:
        """Recipients, their instruction messages and the routing result, in one transaction.
        Returns each recipient's own conversation."""
        members = await self._members(merchant, users)
        notification_id = notification.id
        async with self._db() as session:
            instruction = instruction_text(notification, support_type)
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

    async def _send_requests(
        self,
        notification: Notification,
        merchant: Merchant,
        members: dict[int, _Member],
        kind: DeliveryKind,
    ) -> None:
        cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
        public = format_notification_id(notification.id)
        template = await template_for(
            self._db,
            cfg.requested_campaign.value,
            merchant.default_language,
            merchant.id,
            merchant.default_language,
        )
        rendered = render(template, [public, headline(notification)])
        await self._fan_out(
            notification.id,
            [
                (
                    keys.member_key(notification.id, kind, m.user.id),
                    self._member_target(merchant, m),
                )
                for m in members.values()
            ],
            kind,
            rendered=rendered,
        )

    async def _fan_out(
        self,
        notification_id: int,
        targets: list[tuple[str, Target]],
        kind: DeliveryKind,
        *,
        rendered: Any = None,
        text: str | None = None,
    ) -> int:
        """Send to several people at once; a permanent refusal for one person is logged and
        does not stop the others; a retryable one fails the activity (the ledger skips the
        sends that went through when Temporal retries)."""
        results = await asyncio.gather(
            *(
                self._sender.send(
                    notification_id=notification_id,
                    key=key,
                    kind=kind,
                    target=target,
                    template=rendered,
                    text=text,
                )
                for key, target in targets
            ),
            return_exceptions=True,
        )
        sent = 0
        retry: SendError | None = None
        for (key, _), result in zip(targets, results, strict=True):
            if isinstance(result, SendError):
                if result.config_error:
                    raise ConfigurationError(f"the channel refused a send: {result}")
                if result.retryable or result.ambiguous:
                    retry = result
                else:
                    log.warning("send %s refused for good: %s", key, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                sent += 1
        if retry is not None:
            raise retry_later(retry)
        return sent

    def _member_target(self, merchant: Merchant, member: _Member) -> Target:
        return Target(
            conversation_id=member.conversation.id,
            channel=ChannelName.whatsapp,
            to=member.user.phone,
            sender=merchant.whatsapp_sender,
            recipient_kind=RecipientKind.merchant_user,
            merchant_user_id=member.user.id,
        )

    async def _notify_members_best_effort(self, *args: Any) -> int:
        """Notices about a notification that has already reached its outcome (closure, the
        answerer told of a failed delivery): a configuration error is logged, not raised, so
        the outcome stands; anything retryable is still retried through the ledger."""
        try:
            return await self._notify_members(*args)
        except ConfigurationError as err:
            log.error("notices not sent: %s", err.message)
            return 0

    async def _notify_members(
        self,
        notification_id: int,
        merchant: Merchant,
        users: list[MerchantUser],
        kind: DeliveryKind,
        text: str,
        campaign: Campaign,
        values: list[str],
    ) -> int:
        """Free-form where the member's own 24 h window is open, else the campaign template."""
        members = await self._members(merchant, users)
        now = utcnow()
        direct: list[tuple[str, Target]] = []
        templated: list[tuple[str, Target]] = []
        for m in members.values():
            pair = (
                keys.member_key(notification_id, kind, m.user.id),
                self._member_target(merchant, m),
            )
            (direct if window_open(m.conversation.last_inbound_at, now) else templated).append(pair)
        sent = 0
        if direct:
            sent += await self._fan_out(notification_id, direct, kind, text=text)
        if templated:
            template = await template_for(
                self._db,
                campaign.value,
                merchant.default_language,
                merchant.id,
                merchant.default_language,
            )
            sent += await self._fan_out(
                notification_id, templated, kind, rendered=render(template, values)
            )
        return sent

    # ---- follow-ups ---------------------------------------------------------------------

    @activity.defn(name="follow_up")
    @with_log_context
    async def follow_up(self, input: FollowUpInput) -> FollowUpResult:
        async with self._db() as session:
            notification = await session.get(Notification, input.notification_id)
            assert notification is not None
            merchant = await session.get(Merchant, notification.merchant_id)
            assert merchant is not None
            users = list(
                (
                    await session.scalars(
                        select(MerchantUser).where(MerchantUser.merchant_id == merchant.id)
                    )
                ).all()
            )
        public = format_notification_id(notification.id)
        admins = {u.id for u in users if u.user_type == "admin"}
        recipients = list(input.recipients)
        sent = 0
        if input.kind is FollowUpKind.reminder:
            current = [u for u in users if u.id in recipients]
            sent = await self._notify_members(
                notification.id,
                merchant,
                current,
                DeliveryKind.reminder,
                f"Reminder: {public} is still waiting for an answer: {headline(notification)}",
                Campaign.notification_reminder,
                [public, headline(notification)],
            )
        else:
            # Escalation widens the circle to on-call users and admins not yet asked.
            extra = [u for u in users if (u.on_call or u.id in admins) and u.id not in recipients]
            if extra:
                members = await self._add_recipients(
                    notification,
                    merchant,
                    extra,
                    "escalation",
                    support_type=notification.context.get("support_request_type"),
                )
                await self._send_requests(
                    notification, merchant, members, kind=DeliveryKind.escalation
                )
                recipients += [u.id for u in extra]
                sent = len(extra)
        return FollowUpResult(
            recipients=recipients, allowed_answerers=sorted(admins | set(recipients)), sent=sent
        )

    # ---- answer delivery ----------------------------------------------------------------

    @activity.defn(name="deliver_answer")
    @with_log_context
    async def deliver_answer(self, input: DeliverInput) -> DeliverResult:
        public = format_notification_id(input.notification_id)
        text = str(input.answer.get(input.customer_field, "")).strip()
        async with self._db() as session:
            notification, conversation, merchant, customer = (
                await session.execute(
                    select(Notification, Conversation, Merchant, ConversationUser)
                    .join(Conversation, Conversation.id == Notification.conversation_id)
                    .join(Merchant, Merchant.id == Notification.merchant_id)
                    .join(
                        ConversationUser, ConversationUser.id == Conversation.conversation_user_id
                    )
                    .where(Notification.id == input.notification_id)
                )
            ).one()
            already = await session.scalar(
                select(NotificationAnswer.id).where(
                    NotificationAnswer.notification_id == notification.id,
                    NotificationAnswer.accepted.is_(True),
                    NotificationAnswer.created_at == input.answered_at,
                )
            )
        language = conversation.language or merchant.default_language
        if already is not None and notification.localized_fragment:
            # A retry: the answer and its words were kept by the earlier attempt.
            localized = Localized(
                notification.localized_fragment, notification.localized_sentence or ""
            )
        else:
            # Localize first, then write the answer, its words and the Document in one
            # transaction: one commit before the customer's send.
            localized = await self._localize(text, language)
            await self._record_answer(notification, input, text, localized, first=already is None)
        cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
        outcome = await self._reach_customer(
            notification.id,
            DeliveryKind.answer,
            merchant,
            conversation,
            customer,
            localized,
            cfg.answered_campaign,
            answer_for_compose=localized.full_sentence,
        )

        status = NotificationStatus.delivered if outcome.ok else NotificationStatus.delivery_failed
        async with self._db() as session:
            now = utcnow()
            await session.execute(
                update(Notification)
                .where(Notification.id == notification.id)
                .values(
                    status=status.value,
                    delivery_method=outcome.method,
                    failure_reason=outcome.reason,
                    delivered_at=now if outcome.ok else None,
                    updated_at=now,
                )
            )
            await session.commit()

        users = await self._users(merchant.id)
        notices = 0
        if not notification.allow_multiple_answers:
            others = [u for u in users if u.id in input.recipients and u.id != input.answered_by]
            notice = closure_notice(public)
            notices = await self._notify_members_best_effort(
                notification.id,
                merchant,
                others,
                DeliveryKind.closure,
                notice,
                Campaign.notification_closed,
                [notice],
            )
        if not outcome.ok:
            answerer = [u for u in users if u.id == input.answered_by]
            message = (
                f"Your answer to {public} could not be delivered to the customer: {outcome.reason}"
            )
            await self._notify_members_best_effort(
                notification.id,
                merchant,
                answerer,
                DeliveryKind.delivery_failed,
                message,
                Campaign.notification_closed,
                [message],
            )
        return DeliverResult(
            status=status,
            method=outcome.method,
            provider_message_id=outcome.provider_message_id,
            reason=outcome.reason,
            closure_notices=notices,
        )

    @staticmethod
    async def _apply_to_document(session: Any, notification: Notification, answer: str) -> int:
        """The question and its answer join the merchant's knowledge base. A Document that
        has gone missing is written anew rather than losing the Q&A."""
        document = (
            await session.get(Document, notification.document_id)
            if notification.document_id is not None
            else None
        )
        if document is None:
            log.warning(
                "%s: its UserQuestion document is missing; recreating it",
                format_notification_id(notification.id),
            )
            document = Document(
                merchant_id=notification.merchant_id,
                category="UserQuestion",
                title=headline(notification),
            )
            session.add(document)
            await session.flush()
        document.content = answer
        return document.id

    async def _localize(self, text: str, language: str) -> Localized:
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

    async def _record_answer(
        self,
        notification: Notification,
        input: DeliverInput,
        text: str,
        localized: Localized,
        *,
        first: bool,
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
                session.add(
                    NotificationAnswer(
                        notification_id=notification.id,
                        answered_by=input.answered_by,
                        source=input.source.value,
                        answer_text=json.dumps(input.answer, ensure_ascii=False),
                        accepted=True,
                        single_answer=not notification.allow_multiple_answers,
                        created_at=input.answered_at,
                    )
                )
                values.update(
                    status=NotificationStatus.answered.value,
                    answered_by=input.answered_by,
                    answered_at=input.answered_at,
                )
                if notification.type == NotificationType.user_question_request:
                    values["document_id"] = await self._apply_to_document(
                        session, notification, text
                    )
            await session.execute(
                update(Notification).where(Notification.id == notification.id).values(**values)
            )
            await session.commit()

    async def _compose(self, conversation: Conversation, answer: str, language: str) -> str:
        async with self._db() as session:
            rows = (
                await session.scalars(
                    select(Message)
                    .where(
                        Message.conversation_id == conversation.id,
                        Message.role.in_((MessageRole.user, MessageRole.assistant)),
                    )
                    .order_by(Message.created_at.desc(), Message.id.desc())
                    .limit(HISTORY_TURNS)
                )
            ).all()
        history = [ChatTurn(role=m.role, content=m.content) for m in reversed(rows)]
        try:
            return await self._ai.compose_reply(history, answer, language)
        except AIError as err:
            if not fall_back(err):
                raise
            log.warning("reply composition failed; sending the localized answer as is")
            return answer

    async def _reach_customer(
        self,
        notification_id: int,
        kind: DeliveryKind,
        merchant: Merchant,
        conversation: Conversation,
        customer: ConversationUser,
        localized: Localized,
        campaign: Campaign,
        *,
        answer_for_compose: str | None,
    ) -> _Outcome:
        """The 24-hour rule, decided now: free-form inside the window, the campaign outside
        it, and the campaign again when the provider says the window has closed after all."""
        public = format_notification_id(notification_id)
        now = utcnow()
        last = conversation.last_inbound_at
        language = conversation.language or merchant.default_language
        if conversation.channel == ChannelName.instagram:
            return await self._reach_instagram(
                notification_id, kind, merchant, conversation, customer, localized, last, now
            )
        target = Target(
            conversation_id=conversation.id,
            channel=ChannelName.whatsapp,
            to=customer.phone or "",
            sender=merchant.whatsapp_sender,
            recipient_kind=RecipientKind.customer,
        )
        if not target.to:
            return _Outcome(False, None, None, "the customer has no phone number")
        if window_open(last, now):
            body = (
                await self._compose(conversation, answer_for_compose, language)
                if answer_for_compose
                else localized.full_sentence
            )
            try:
                sent = await self._sender.send(
                    notification_id=notification_id,
                    key=keys.customer_key(notification_id, kind),
                    kind=kind,
                    target=target,
                    text=body,
                )
                return _Outcome(True, SendMethod.direct, sent.provider_message_id, None)
            except SendError as err:
                if not err.window_closed:
                    return self._failed_or_raise(err)
                log.info("%s: free-form refused (window closed); sending the template", public)
        try:
            async with self._db() as session:
                template = await find_template(
                    session, campaign.value, language, merchant.id, merchant.default_language
                )
        except TemplateMissing as exc:
            return _Outcome(False, SendMethod.campaign, None, f"configuration error: {exc}")
        fragment = localized.continuation_fragment
        key = keys.customer_template_key(notification_id, kind)
        try:
            sent = await self._sender.send(
                notification_id=notification_id,
                key=key,
                kind=kind,
                target=target,
                template=render(template, [fragment]),
            )
        except SendError as err:
            if not err.variable_refused:
                return self._failed_or_raise(err, method=SendMethod.campaign)
            # The provider's copy of the template is stricter than ours (63013 whitespace,
            # 63021 too long): send once more with a plain, shorter variable.
            log.warning("%s: template variable refused (%s); shortening it", public, err.code)
            try:
                sent = await self._sender.send(
                    notification_id=notification_id,
                    key=keys.shortened_key(key),
                    kind=kind,
                    target=target,
                    template=render(template, [shortened_variable(fragment)]),
                )
            except SendError as again:
                return self._failed_or_raise(again, method=SendMethod.campaign)
        return _Outcome(True, SendMethod.campaign, sent.provider_message_id, None)

    async def _reach_instagram(
        self,
        notification_id: int,
        kind: DeliveryKind,
        merchant: Merchant,
        conversation: Conversation,
        customer: ConversationUser,
        localized: Localized,
        last: Any,
        now: Any,
    ) -> _Outcome:
        """Instagram has no templates: inside 24 h a normal reply; up to 7 days only a
        human-authored answer with the HUMAN_AGENT tag; beyond that, no way to reach them."""
        if not window_open(last, now, INSTAGRAM_HUMAN_AGENT_WINDOW):
            return _Outcome(
                False,
                None,
                None,
                "the customer last wrote on Instagram more than 7 days ago (or never); "
                "Instagram allows no message now",
            )
        human_agent = not window_open(last, now) and kind == DeliveryKind.answer
        if not window_open(last, now) and not human_agent:
            return _Outcome(False, None, None, "the Instagram 24-hour window is closed")
        target = Target(
            conversation_id=conversation.id,
            channel=ChannelName.instagram,
            to=customer.instagram_user_id or "",
            sender=merchant.instagram_page_id or "",
            recipient_kind=RecipientKind.customer,
        )
        try:
            sent = await self._sender.send(
                notification_id=notification_id,
                key=keys.customer_key(notification_id, kind),
                kind=kind,
                target=target,
                text=localized.full_sentence,
                human_agent=human_agent,
            )
        except SendError as err:
            return self._failed_or_raise(err)
        return _Outcome(True, SendMethod.direct, sent.provider_message_id, None)

    @staticmethod
    def _failed_or_raise(err: SendError, method: SendMethod | None = SendMethod.direct) -> _Outcome:
        if err.retryable or err.ambiguous:
            raise retry_later(err)
        prefix = "configuration error: " if err.config_error else ""
        return _Outcome(False, method, None, f"{prefix}{err.code}: {err.message}")

    async def _users(self, merchant_id: int) -> list[MerchantUser]:
        async with self._db() as session:
            return list(
                (
                    await session.scalars(
                        select(MerchantUser).where(MerchantUser.merchant_id == merchant_id)
                    )
                ).all()
            )

    # ---- finish -------------------------------------------------------------------------

    @activity.defn(name="finish_notification")
    @with_log_context
    async def finish_notification(self, input: FinishInput) -> None:
        public = format_notification_id(input.notification_id)
        async with self._db() as session:
            notification = await session.get(Notification, input.notification_id)
            if notification is None:
                # Nothing to close (a workflow started for a row that was never written):
                # retrying could never succeed.
                log.warning("%s: no such notification; nothing to close", public)
                return
            if not NotificationStatus(notification.status).is_terminal:
                notification.status = input.status.value
                notification.closed_at = utcnow()
                notification.close_reason = input.reason
                if input.status is NotificationStatus.delivery_failed:
                    notification.failure_reason = input.reason
                await session.commit()
            merchant = await session.get(Merchant, notification.merchant_id)
            assert merchant is not None
            conversation = await session.get(Conversation, notification.conversation_id)
            assert conversation is not None
            customer = await session.get(ConversationUser, conversation.conversation_user_id)
            assert customer is not None
        users = [u for u in await self._users(merchant.id) if u.id in input.recipients]
        if input.status is NotificationStatus.expired:
            text = f"Notification {public} expired without an answer and is now closed."
        elif input.status is NotificationStatus.closed:
            why = f": {input.reason}" if input.reason else "."
            text = f"Notification {public} was closed by an operator{why}"
        else:
            text = f"Notification {public} could not be completed: {input.reason}"
        await self._notify_members_best_effort(
            input.notification_id,
            merchant,
            users,
            DeliveryKind(input.status.value),
            text,
            Campaign.notification_closed,
            [text],
        )
        if input.tell_customer:
            language = conversation.language or merchant.default_language
            localized = await self._localize(EXPIRY_MESSAGE, language)
            outcome = await self._reach_customer(
                input.notification_id,
                DeliveryKind.expiry,
                merchant,
                conversation,
                customer,
                localized,
                Campaign.customer_request_expired,
                answer_for_compose=None,
            )
            if not outcome.ok:
                log.warning("%s: the customer could not be told: %s", public, outcome.reason)

    # ---- refused answers ----------------------------------------------------------------

    @activity.defn(name="record_rejection")
    @with_log_context
    async def record_rejection(self, input: RecordRejectionInput) -> None:
        """Refused answers from the ``answer`` signal (the Temporal UI) join the history."""
        async with self._db() as session:
            exists = await session.scalar(
                select(NotificationAnswer.id).where(
                    NotificationAnswer.notification_id == input.notification_id,
                    NotificationAnswer.accepted.is_(False),
                    NotificationAnswer.created_at == input.attempt.at,
                    NotificationAnswer.reason_code == input.attempt.code,
                )
            )
            if exists is not None:
                return
            # The claimed answerer may not exist at all (ids are guessable): keep the claim
            # in the reason rather than break the foreign key.
            known = (
                input.attempt.answered_by is not None
                and (await session.get(MerchantUser, input.attempt.answered_by)) is not None
            )
            reason = input.attempt.message
            if not known and input.attempt.answered_by is not None:
                reason = f"{reason} (claimed by unknown user {input.attempt.answered_by})"
            session.add(
                NotificationAnswer(
                    notification_id=input.notification_id,
                    answered_by=input.attempt.answered_by if known else None,
                    source=input.attempt.source.value,
                    answer_text=input.answer_json[:20000],
                    accepted=False,
                    reason_code=input.attempt.code,
                    reason=reason,
                    created_at=input.attempt.at,
                )
            )
            await session.commit()

    def all(self) -> list[Any]:
        """Every activity of this class, for the worker."""
        return [
            self.open_notification,
            self.follow_up,
            self.deliver_answer,
            self.finish_notification,
            self.record_rejection,
        ]


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    method: SendMethod | None
    provider_message_id: str | None
    reason: str | None
