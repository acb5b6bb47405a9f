"""Sending a correction to the customer (DESIGN §10): the version was recorded by the request
(:mod:`notifyflow.corrections`); this activity localizes it once (kept on the version row, so
a retry sends the same words) and reaches the customer by the 24-hour rule through the ledger,
under a key per notification and version (``NOTIF_7:correction-2:customer``), so a retried or
re-run activity never sends a version twice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from temporalio import activity

from notifyflow.activities.answers import Answers
from notifyflow.activities.common import non_retryable, with_log_context
from notifyflow.ai.base import AIProvider, Localized
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerVersion, Notification
from notifyflow.db.types import utcnow
from notifyflow.models.corrections import (
    CorrectionFailure,
    CorrectionInput,
    CorrectionResult,
    CorrectionStatus,
)
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import Campaign
from notifyflow.models.vocabulary import DeliveryKind
from notifyflow.outreach.contacts import load_contact
from notifyflow.outreach.policy import Outcome
from notifyflow.outreach.service import Outreach

log = logging.getLogger(__name__)

# What opens a free-form correction, in the customer's language: the reply the LLM composes
# keeps it, and so does the fallback that sends the localized words as they are. Languages
# without an entry get English, which the composing LLM then writes in their language.
CORRECTION_LEAD: dict[str, str] = {
    "en": "A correction to our earlier answer:",
    "es": "Una corrección a nuestra respuesta anterior:",
}


def correction_lead(language: str) -> str:
    base = language.replace("_", "-").split("-", 1)[0].lower()
    return CORRECTION_LEAD.get(base, CORRECTION_LEAD["en"])


def _result(row: AnswerVersion) -> CorrectionResult:
    return CorrectionResult(
        notification_id=row.notification_id,
        version=row.version,
        status=CorrectionStatus(row.status),
        method=row.delivery_method,
        provider_message_id=row.provider_message_id,
        reason=row.failure_reason,
    )


class CorrectionActivities:
    def __init__(self, db: SessionFactory, ai: AIProvider, outreach: Outreach) -> None:
        self._db = db
        self._outreach = outreach
        self._answers = Answers(db, ai)

    async def _row(self, notification_id: int, version: int) -> AnswerVersion:
        async with self._db() as session:
            row = await session.scalar(
                select(AnswerVersion).where(
                    AnswerVersion.notification_id == notification_id,
                    AnswerVersion.version == version,
                )
            )
        if row is None:
            # The request records the version before it starts this workflow.
            raise non_retryable(
                f"{format_notification_id(notification_id)} has no version {version}"
            )
        return row

    @activity.defn(name="deliver_correction")
    @with_log_context
    async def deliver_correction(self, input: CorrectionInput) -> CorrectionResult:
        public = format_notification_id(input.notification_id)
        row = await self._row(input.notification_id, input.version)
        if row.status != CorrectionStatus.pending:
            return _result(row)
        async with self._db() as session:
            notification = await session.get(Notification, input.notification_id)
            assert notification is not None  # the version row's foreign key
            contact = await load_contact(session, notification)
        language = contact.language
        if row.localized_fragment is None or row.localized_sentence is None:
            localized = await self._answers.localize(row.content, language)
            async with self._db() as session:
                await session.execute(
                    update(AnswerVersion)
                    .where(AnswerVersion.id == row.id)
                    .values(
                        localized_fragment=localized.continuation_fragment,
                        localized_sentence=localized.full_sentence,
                    )
                )
                await session.commit()
        else:
            localized = Localized(row.localized_fragment, row.localized_sentence)
        # The template says "a correction to our earlier answer: {{1}}" itself; the free-form
        # message gets the same lead before the corrected words.
        worded = Localized(
            localized.continuation_fragment,
            f"{correction_lead(language)} {localized.full_sentence}",
        )
        reached = await self._outreach.reach_customer(
            input.notification_id,
            DeliveryKind.correction,
            contact,
            worded,
            Campaign.notification_correction,
            compose=self._answers.compose,
            part=input.version,
        )
        outcome = reached.outcome
        result = await self._record(row.id, outcome)
        log.info(
            "%s: correction v%d %s (%s)",
            public,
            input.version,
            result.status.value,
            outcome.method or outcome.reason,
        )
        return result

    async def _record(self, row_id: int, outcome: Outcome) -> CorrectionResult:
        values: dict[str, Any] = {
            "status": CorrectionStatus.sent if outcome.ok else CorrectionStatus.failed,
            "delivery_method": outcome.method,
            "provider_message_id": outcome.provider_message_id,
            "failure_reason": outcome.reason,
            "sent_at": utcnow() if outcome.ok else None,
        }
        async with self._db() as session:
            await session.execute(
                update(AnswerVersion)
                .where(
                    AnswerVersion.id == row_id,
                    AnswerVersion.status == CorrectionStatus.pending.value,
                )
                .values(**values)
            )
            await session.commit()
            row = await session.get(AnswerVersion, row_id)
            assert row is not None
            return _result(row)

    @activity.defn(name="record_correction_failure")
    @with_log_context
    async def record_correction_failure(self, input: CorrectionFailure) -> CorrectionResult:
        """A day of failed attempts: the version says so (its content stays the current one)."""
        row = await self._row(input.notification_id, input.version)
        return await self._record(row.id, Outcome(False, None, None, input.reason))

    def all(self) -> list[Callable[..., Any]]:
        return [self.deliver_correction, self.record_correction_failure]
