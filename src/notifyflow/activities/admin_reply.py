"""An admin's WhatsApp message that answers a notification, and the short reply they get.

``answer_admin_reply`` decides which notification the message is about — the campaign it
quotes (``OriginalRepliedMessageSid``), else a ``NOTIF_<n>`` it names, else the one notification
still open for this admin — turns the text into the answer object with the AI provider and
submits it through :func:`notifyflow.starter.answer_notification` (handed in by the worker).
``reply_to_admin`` sends the outcome in plain words, free-form: the admin has just written, so
their own window is open.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from notifyflow.activities.common import fall_back
from notifyflow.ai.base import AIError, AIProvider
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    Delivery,
    Merchant,
    MerchantUser,
    Notification,
    NotificationRecipient,
)
from notifyflow.models.answer_templates import hash_code
from notifyflow.models.errors import NotificationError, RefusalCode, refusal_for
from notifyflow.models.ids import INT32_MAX, format_notification_id, workflow_id_for
from notifyflow.models.inbound import (
    AdminReplyDecision,
    AdminReplyInput,
    AdminReplyMessage,
    ReplyOutcome,
)
from notifyflow.models.notification import NotificationStatus, headline
from notifyflow.models.workflow_io import AnswerAccepted, AnswerSource, WorkflowStatus
from notifyflow.outreach.replies import Replies

log = logging.getLogger(__name__)

# "NOTIF_12" anywhere in the text, any case, as a whole token.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])NOTIF_([1-9][0-9]{0,9})(?![0-9A-Za-z_])", re.IGNORECASE)
# The mention and what usually separates it from the answer: "NOTIF_12: …", "(NOTIF_12) …".
_MENTION_WITH_PUNCTUATION = r"[\s(\[]*{id}[\s)\]:,.\-–—]*"
MAX_LISTED = 5


def mentioned_ids(text: str) -> list[int]:
    """Distinct ``NOTIF_<n>`` ids in the text, in order of appearance."""
    seen: list[int] = []
    for match in _MENTION.finditer(text):
        n = int(match.group(1))
        if n <= INT32_MAX and n not in seen:
            seen.append(n)
    return seen


def without_mention(text: str, n: int) -> str:
    """The answer without the id the admin typed to say which notification it is for."""
    pattern = _MENTION_WITH_PUNCTUATION.format(id=re.escape(format_notification_id(n)))
    return " ".join(re.sub(pattern, " ", text, flags=re.IGNORECASE).split())


def accepted_text(public: str) -> str:
    return f"Thanks — your answer to {public} was accepted and is on its way to the customer."


def which_text(candidates: list[int]) -> str:
    ids = [format_notification_id(n) for n in candidates]
    listed = ", ".join(ids[:MAX_LISTED]) + (", …" if len(ids) > MAX_LISTED else "")
    return (
        "Which notification is this about? Reply to its message or include its id, "
        f"e.g. {ids[-1]}. Open for you: {listed}."
    )


def unreadable_text(public: str) -> str:
    return (
        f"Your message could not be read as an answer to {public}. Please reply to its "
        "message with the answer for the customer."
    )


def _plain(details: Any) -> str:
    """Schema problems in plain words: ``"answer" is missing``."""
    parts = []
    for item in details if isinstance(details, list) else []:
        field = str(item.get("path", "")).strip("/") or "the answer"
        message = str(item.get("message", "is not valid"))
        if message == "required":
            message = "is missing"
        elif message == "must not be blank" or "is too short" in message:
            message = "is empty"
        parts.append(f'"{field}" {message}' if field != "the answer" else f"{field} {message}")
    return "; ".join(parts[:3])


def _available(details: Any) -> list[str]:
    first = details[0] if isinstance(details, list) and details else {}
    found = first.get("available") if isinstance(first, dict) else None
    return [str(c) for c in found] if isinstance(found, list) else []


def refusal_text(public: str, err: NotificationError, template: str | None = None) -> str:
    """What was wrong, for the admin (``template``: the ``#code`` they replied with)."""
    code = err.code
    if code is RefusalCode.unknown_template:
        available = _available(err.details)
        listed = (
            "Quick answers for it: " + ", ".join(f"#{c}" for c in available) + "."
            if available
            else "There are no quick answers for it yet."
        )
        return (
            f"There is no quick answer #{template or '?'} for {public}. {listed} Or reply "
            "with the answer in your own words."
        )
    if template and code in (RefusalCode.schema_mismatch, RefusalCode.missing_field):
        why = _plain(err.details) or err.message
        return (
            f"The quick answer #{template} no longer fits {public} ({why}), so nothing was "
            "sent. Reply with the answer in your own words, and have the quick answer updated."
        )
    if code is RefusalCode.already_answered:
        return f"{public} was already answered, so your reply was not sent to the customer."
    if code is RefusalCode.closed:
        return f"{public} is closed and no longer takes answers."
    if code is RefusalCode.not_allowed:
        return f"You cannot answer {public}: it was not sent to you."
    if code in (RefusalCode.not_found, RefusalCode.malformed_id, RefusalCode.wrong_notification):
        return f"There is no notification {public}."
    why = _plain(err.details) or err.message
    return (
        f"Your answer to {public} was not accepted: {why}. Please reply to its message with "
        "the answer again."
    )


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class SubmitAnswer(Protocol):
    """:func:`notifyflow.starter.answer_notification`: submits through the workflow's update."""

    async def __call__(
        self,
        client: Client,
        db: SessionFactory,
        notification_id: str,
        *,
        answered_by: int,
        answer: dict[str, Any] | str,
        source: AnswerSource,
    ) -> AnswerAccepted: ...


class AdminReplyActivities:
    """The worker's database and AI, the replies, and the client API's answer submission
    (handed in by ``worker.py``: activities import neither the starter nor a workflow)."""

    def __init__(
        self, db: SessionFactory, ai: AIProvider, replies: Replies, submit: SubmitAnswer
    ) -> None:
        self._db = db
        self._ai = ai
        self._replies = replies
        self._submit = submit

    # ---- understand and submit ----------------------------------------------------------

    @activity.defn(name="answer_admin_reply")
    async def answer_admin_reply(self, input: AdminReplyInput) -> AdminReplyDecision:
        target = await self._which(input)
        if isinstance(target, list):
            if not target:
                log.info("whatsapp message %s answers nothing open", input.message_sid)
                return AdminReplyDecision(outcome=ReplyOutcome.not_an_answer)
            return AdminReplyDecision(outcome=ReplyOutcome.ambiguous, reply=which_text(target))
        n = target
        public = format_notification_id(n)
        async with self._db() as session:
            notification = await session.get(Notification, n)
        if notification is None:
            return AdminReplyDecision(
                outcome=ReplyOutcome.refused,
                reason_code=RefusalCode.not_found.value,
                reply=f"There is no notification {public}.",
            )
        text = without_mention(input.text, n)
        answer: dict[str, Any] | str
        template: str | None = None
        if (
            notification.merchant_id != input.merchant_id
            or refusal_for(
                public,
                NotificationStatus(notification.status),
                allow_multiple_answers=notification.allow_multiple_answers,
            )
            is not None
        ):
            # Refused whatever it says: submitted as written, so the attempt joins the
            # answer history, without asking the AI to make sense of it first.
            answer = input.text
        elif (template := hash_code(text)) is not None:
            # "#hours": the merchant's answer template, resolved (and checked against the
            # schema) by the starter; no AI reading needed.
            answer = {"template": template}
        else:
            made = await self._answer_from(text, notification)
            if made is None:
                return AdminReplyDecision(
                    outcome=ReplyOutcome.unreadable,
                    notification_id=n,
                    reply=unreadable_text(public),
                )
            answer = made
        client = activity.client()
        try:
            await self._submit(
                client,
                self._db,
                public,
                answered_by=input.merchant_user_id,
                answer=answer,
                source=AnswerSource.whatsapp,
            )
        except NotificationError as err:
            if err.code is RefusalCode.not_ready:
                # Not a refusal (the workflow was busy or still routing): let Temporal retry
                # this activity rather than tell the admin to try again.
                raise ApplicationError(err.message, type="NotReady") from None
            if (
                err.code is RefusalCode.already_answered
                and activity.info().attempt > 1
                and await self._answered_by(client, n) == input.merchant_user_id
            ):
                # An earlier attempt of this activity got the answer accepted, then failed.
                log.info("%s: answer from %s accepted earlier", public, input.message_sid)
            else:
                reply = (
                    f"You cannot answer {public}: it was not sent to you."
                    if notification.merchant_id != input.merchant_id
                    else refusal_text(public, err, template)
                )
                return AdminReplyDecision(
                    outcome=ReplyOutcome.refused,
                    notification_id=n,
                    reason_code=err.code.value,
                    reply=reply,
                )
        return AdminReplyDecision(
            outcome=ReplyOutcome.accepted, notification_id=n, reply=accepted_text(public)
        )

    async def _which(self, input: AdminReplyInput) -> int | list[int]:
        """The notification meant, or the candidates when it is not clear (none: [])."""
        async with self._db() as session:
            if input.quoted_sid:
                quoted = await session.scalar(
                    select(Delivery.notification_id)
                    .where(
                        Delivery.provider_message_id == input.quoted_sid,
                        Delivery.merchant_user_id == input.merchant_user_id,
                    )
                    .limit(1)
                )
                if quoted is not None:
                    return quoted
            mentioned = mentioned_ids(input.text)
            if len(mentioned) == 1:
                return mentioned[0]
            if mentioned:
                return mentioned
            open_ids = list(
                (
                    await session.scalars(
                        select(Notification.id)
                        .join(
                            NotificationRecipient,
                            NotificationRecipient.notification_id == Notification.id,
                        )
                        .where(
                            NotificationRecipient.merchant_user_id == input.merchant_user_id,
                            Notification.status == NotificationStatus.requested.value,
                        )
                        .order_by(Notification.id)
                    )
                ).all()
            )
        return open_ids[0] if len(open_ids) == 1 else open_ids

    async def _answer_from(self, text: str, notification: Notification) -> dict[str, Any] | None:
        if not text.strip():
            return None
        written = _json_object(text)
        if written is not None:
            # The admin wrote the answer object itself (as their instruction message shows):
            # taken as written and validated by the workflow — never folded whole into one
            # field, which would send its resolution notes to the customer.
            return written
        try:
            return await self._ai.answer_from_reply(
                text, notification.answer_schema, headline(notification.type, notification.context)
            )
        except AIError as err:
            if not fall_back(err):
                raise
            # Documented fallback: a schema with one required text field takes the words.
            from notifyflow.ai.offline import OfflineProvider

            log.warning("answer extraction failed (%s); taking the admin's words as they are", err)
            return await OfflineProvider().answer_from_reply(
                text, notification.answer_schema, headline(notification.type, notification.context)
            )

    async def _answered_by(self, client: Client, n: int) -> int | None:
        async with self._db() as session:
            row = await session.get(Notification, n)
        if row is not None and row.answered_by is not None:
            return row.answered_by
        try:
            status: WorkflowStatus = await client.get_workflow_handle(workflow_id_for(n)).query(
                "status", result_type=WorkflowStatus
            )
        except Exception as exc:  # noqa: BLE001 - no answer known: treat as someone else's
            log.warning("%s: status query failed: %s", format_notification_id(n), exc)
            return None
        return status.answered_by

    # ---- reply --------------------------------------------------------------------------

    @activity.defn(name="reply_to_admin")
    async def reply_to_admin(self, input: AdminReplyMessage) -> None:
        async with self._db() as session:
            user = await session.get(MerchantUser, input.merchant_user_id)
            merchant = await session.get(Merchant, input.merchant_id)
        if user is None or merchant is None:
            log.warning("reply to %s: its merchant user is gone", input.message_sid)
            return
        await self._replies.reply(
            input.notification_id,
            user,
            merchant,
            input.conversation_id,
            input.text,
            input.message_sid,
        )

    def all(self) -> list[Callable[..., Any]]:
        return [self.answer_admin_reply, self.reply_to_admin]
