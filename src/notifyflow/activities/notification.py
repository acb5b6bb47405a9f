"""The notification lifecycle's activities: open (route + fan out), follow up (remind,
escalate), deliver the answer, finish (expire or close), record a refused answer.

Each is a short adapter: who is asked comes from :class:`~notifyflow.activities.routing.Router`,
the answer's words and records from :mod:`notifyflow.activities.answers`, and every message
goes out through :class:`~notifyflow.outreach.service.Outreach`."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from temporalio import activity

from notifyflow.activities.answers import (
    Answers,
    count_first_answer,
    count_outcome,
    load_for_delivery,
    outcome_statement,
    record_end,
    record_outcome,
)
from notifyflow.activities.common import with_log_context
from notifyflow.activities.routing import ADMIN, Router
from notifyflow.ai.base import AIProvider, Localized
from notifyflow.db.answer_history import record_refused_answer
from notifyflow.db.session import SessionFactory
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    Campaign,
    NotificationStatus,
    NotificationType,
    closure_notice,
    headline,
)
from notifyflow.models.vocabulary import DeliveryKind
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
from notifyflow.outreach.errors import ConfigurationError
from notifyflow.outreach.ledger import ClaimWith, Send, Sent
from notifyflow.outreach.members import merchant_users, users_asked
from notifyflow.outreach.service import Notice, Outreach, tally

log = logging.getLogger(__name__)

EXPIRY_MESSAGE = (
    "We are sorry: our team could not get back to you about your request in time. "
    "Please write to us again if you still need help."
)


def delivery_failed_notice(public: str, reason: str | None) -> str:
    """What the admin who answered is told when their answer could not be delivered."""
    return f"Your answer to {public} could not be delivered to the customer: {reason}"


# The close reason a customer's agent gives when the customer no longer needs an answer.
WITHDRAWN = "withdrawn"


def end_notice(public: str, status: NotificationStatus, reason: str | None) -> str:
    """What the recipients are told when a notification ends unanswered."""
    if status is NotificationStatus.expired:
        return f"Notification {public} expired without an answer and is now closed."
    if status is NotificationStatus.closed and reason == WITHDRAWN:
        return f"Notification {public} was withdrawn by the customer: no answer is needed."
    if status is NotificationStatus.closed:
        why = f": {reason}" if reason else "."
        return f"Notification {public} was closed by an operator{why}"
    return f"Notification {public} could not be completed: {reason}"


class NotificationActivities:
    """Dependencies are built once per worker and shared by every activity call."""

    def __init__(self, db: SessionFactory, ai: AIProvider, outreach: Outreach) -> None:
        self._db = db
        self._outreach = outreach
        self._router = Router(db, ai, outreach)
        self._answers = Answers(db, ai)

    @activity.defn(name="open_notification")
    @with_log_context
    async def open_notification(self, input: OpenInput) -> OpenResult:
        routed = await self._router.route(input.notification_id)
        try:
            await self._outreach.ask(
                routed.notification,
                routed.merchant,
                routed.members,
                DeliveryKind.request,
                claim_with=routed.writes,
            )
        except ConfigurationError:
            # No request template: nobody is asked, but who would have been stays on record
            # (the notification's recipients, their instructions), as when the provider
            # refuses the sends — then they went in with the claim already (the unique
            # recipient refuses them a second time).
            with contextlib.suppress(IntegrityError):
                await self._outreach.write(routed.writes)
            raise
        allowed = sorted({u.id for u in routed.chosen} | {u.id for u in routed.admins})
        return OpenResult(
            recipients=[u.id for u in routed.chosen],
            allowed_answerers=allowed,
            support_type=routed.support_type,
        )

    @activity.defn(name="follow_up")
    @with_log_context
    async def follow_up(self, input: FollowUpInput) -> FollowUpResult:
        notification, merchant, users = await self._router.load(input.notification_id)
        public = format_notification_id(notification.id)
        about = headline(notification.type, notification.context)
        admins = {u.id for u in users if u.user_type == ADMIN}
        recipients = list(input.recipients)
        sent = 0
        if input.kind is FollowUpKind.reminder:
            current = [u for u in users if u.id in recipients]
            sent = await self._outreach.notify_members(
                notification.id,
                merchant,
                current,
                Notice(
                    DeliveryKind.reminder,
                    f"Reminder: {public} is still waiting for an answer: {about}",
                    Campaign.notification_reminder,
                    [public, about],
                ),
            )
        else:
            # Escalation widens the circle to on-call users and admins not yet asked.
            extra = [u for u in users if (u.on_call or u.id in admins) and u.id not in recipients]
            if extra:
                members = await self._router.add_recipients(
                    notification,
                    merchant,
                    extra,
                    "escalation",
                    support_type=notification.context.get("support_request_type"),
                )
                await self._outreach.ask(notification, merchant, members, DeliveryKind.escalation)
                recipients += [u.id for u in extra]
                sent = len(extra)
        return FollowUpResult(
            recipients=recipients, allowed_answerers=sorted(admins | set(recipients)), sent=sent
        )

    @activity.defn(name="deliver_answer")
    @with_log_context
    async def deliver_answer(self, input: DeliverInput) -> DeliverResult:
        public = format_notification_id(input.notification_id)
        text = str(input.answer.get(input.customer_field, "")).strip()
        loaded = await load_for_delivery(self._db, input)
        notification, merchant = loaded.notification, loaded.contact.merchant
        language = loaded.contact.language
        claim_with: ClaimWith = ()
        # The first answer is counted once its row is committed (with the claim).
        counted_on_claim = False
        if loaded.recorded and notification.localized_fragment:
            # A retry: the answer and its words were kept by the earlier attempt.
            localized = Localized(
                notification.localized_fragment, notification.localized_sentence or ""
            )
        else:
            # Localize first, then write the answer, its words and the Document with the
            # ledger's claim of the customer's message: one commit before the send.
            localized = await self._answers.localize(text, language)
            first = not loaded.recorded
            if not self._answers.rides_with_claim(
                notification,
                first=first,
                document_exists=loaded.document_exists,
                subscriptions=merchant.webhook_subscriptions,
            ):
                await self._answers.record(
                    notification,
                    input,
                    text,
                    localized,
                    first=first,
                    subscriptions=merchant.webhook_subscriptions,
                )
            else:
                # Built at the claim: the answer is stamped as written then, after the reply
                # was composed (the live event stream orders entries by it).
                claim_with = functools.partial(
                    self._answers.statements, notification, input, text, localized, first=first
                )
                counted_on_claim = first
        cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
        users, known = loaded.roster.users, loaded.roster.known
        closure: list[Send] = []
        if not notification.allow_multiple_answers:
            # The others are told it is closed with the same claim and record as the
            # customer's message (one statement each for all of them).
            others = [u for u in users if u.id in input.recipients and u.id != input.answered_by]
            try:
                closure = await self._outreach.notice_sends(
                    notification.id,
                    merchant,
                    others,
                    Notice.plain(DeliveryKind.closure, closure_notice(public)),
                    known,
                )
            except ConfigurationError as err:
                # Best effort: the closure notice follows the outcome, it does not decide it.
                log.error("closure notices not sent: %s", err.message)
        reached = await self._outreach.reach_customer(
            notification.id,
            DeliveryKind.answer,
            loaded.contact,
            localized,
            cfg.answered_campaign,
            compose=functools.partial(self._answers.compose, history=loaded.turns),
            alongside=closure,
            claim_with=claim_with,
            # Without webhooks to write, the outcome is recorded with the customer's message.
            outcome_with=(
                None
                if merchant.webhook_subscriptions
                else lambda outcome: outcome_statement(notification.id, outcome, returning=True)
            ),
            on_claimed=(
                (lambda: count_first_answer(notification, input.answered_at))
                if counted_on_claim
                else None
            ),
        )
        outcome = reached.outcome
        if not reached.recorded:
            await record_outcome(
                self._db,
                notification.id,
                notification.merchant_id,
                outcome,
                subscriptions=merchant.webhook_subscriptions,
            )
        elif reached.first_record:
            count_outcome(outcome)
        notices = self._closure_tally(closure, reached.alongside or [])
        if not outcome.ok:
            answerer = [u for u in users if u.id == input.answered_by]
            message = delivery_failed_notice(public, outcome.reason)
            await self._outreach.notify_members(
                notification.id,
                merchant,
                answerer,
                Notice.plain(DeliveryKind.delivery_failed, message),
                best_effort=True,
                known=known,
            )
        status = NotificationStatus.delivered if outcome.ok else NotificationStatus.delivery_failed
        return DeliverResult(
            status=status,
            method=outcome.method,
            provider_message_id=outcome.provider_message_id,
            reason=outcome.reason,
            closure_notices=notices,
            customer_text=localized.full_sentence if outcome.ok else None,
        )

    @staticmethod
    def _closure_tally(sends: list[Send], results: list[Sent | BaseException]) -> int:
        """Closure notices sent; after the outcome is recorded, so a notice to retry retries
        the activity without changing the outcome (the ledger skips what went through)."""
        try:
            return tally(sends, results)
        except ConfigurationError as err:
            log.error("closure notices not sent: %s", err.message)
            return 0

    @activity.defn(name="finish_notification")
    @with_log_context
    async def finish_notification(self, input: FinishInput) -> None:
        public = format_notification_id(input.notification_id)
        contact = await record_end(self._db, input)
        if contact is None:
            # Retrying could never succeed.
            log.warning("%s: no such notification; nothing to close", public)
            return
        merchant = contact.merchant
        told = set(input.recipients)
        if input.tell_those_asked:
            told |= await users_asked(self._db, input.notification_id)
        users = [u for u in await merchant_users(self._db, merchant.id) if u.id in told]
        text = end_notice(public, input.status, input.reason)
        await self._outreach.notify_members(
            input.notification_id,
            merchant,
            users,
            Notice.plain(DeliveryKind(input.status.value), text),
            best_effort=True,
        )
        if input.tell_customer:
            localized = await self._answers.localize(EXPIRY_MESSAGE, contact.language)
            outcome = (
                await self._outreach.reach_customer(
                    input.notification_id,
                    DeliveryKind.expiry,
                    contact,
                    localized,
                    Campaign.customer_request_expired,
                )
            ).outcome
            if not outcome.ok:
                log.warning("%s: the customer could not be told: %s", public, outcome.reason)

    @activity.defn(name="record_rejection")
    @with_log_context
    async def record_rejection(self, input: RecordRejectionInput) -> None:
        """Refused answers from the ``answer`` signal (the Temporal UI) join the history."""
        await record_refused_answer(
            self._db,
            notification_id=input.notification_id,
            answered_by=input.attempt.answered_by,
            source=input.attempt.source.value,
            text=input.answer_json,
            code=input.attempt.code,
            reason=input.attempt.message,
            at=input.attempt.at,
            once=True,
        )

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of this class, for the worker."""
        return [
            self.open_notification,
            self.follow_up,
            self.deliver_answer,
            self.finish_notification,
            self.record_rejection,
        ]
