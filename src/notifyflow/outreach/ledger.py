"""Sends through the delivery ledger: one row per idempotency key (notification, step,
recipient), so a retried activity never messages a person twice once the provider accepted."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notifyflow import worker_metrics
from notifyflow.ai.offline import truncate_words
from notifyflow.channels.base import (
    ACCEPTED_STATUSES,
    FAILED_STATUSES,
    Channel,
    OutboundTemplate,
    OutboundText,
    SendError,
    SendResult,
    closes_window,
)
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Delivery, Message
from notifyflow.db.types import utcnow
from notifyflow.models.vocabulary import (
    ChannelName,
    DeliveryKind,
    MessageRole,
    RecipientKind,
    SendMethod,
)
from notifyflow.outreach.templates import RenderedTemplate

log = logging.getLogger(__name__)

# Twilio refuses a Body longer than this on every channel, WhatsApp included (error 21617).
WHATSAPP_BODY_LIMIT = 1600


@dataclass(frozen=True)
class Target:
    """Who a message goes to, and through which conversation it is recorded."""

    conversation_id: int
    channel: ChannelName  # whatsapp | instagram
    to: str
    sender: str
    recipient_kind: RecipientKind
    merchant_user_id: int | None = None


@dataclass(frozen=True)
class Sent:
    provider_message_id: str
    method: SendMethod
    duplicate: bool  # the ledger already had it: nothing was sent this time


def _count_delivery(outcome: str, kind: str, method: str) -> None:
    worker_metrics.count(
        "notifyflow_deliveries",
        "Sends the provider accepted, or refused for good, by kind and method",
        {"outcome": outcome, "kind": str(kind), "method": str(method)},
    )


class Sender:
    def __init__(
        self, db: SessionFactory, whatsapp: Channel, instagram: Channel | None = None
    ) -> None:
        self._db = db
        self._whatsapp = whatsapp
        self._instagram = instagram

    def _channel(self, target: Target) -> Channel:
        if target.channel == ChannelName.instagram:
            if self._instagram is None:
                raise SendError(
                    "instagram_not_configured", "no Instagram channel configured", config_error=True
                )
            return self._instagram
        return self._whatsapp

    async def send(
        self,
        *,
        notification_id: int,
        key: str,
        kind: DeliveryKind,
        target: Target,
        text: str | None = None,
        template: RenderedTemplate | None = None,
        human_agent: bool = False,
        other_data: dict[str, Any] | None = None,
    ) -> Sent:
        """Send once per ``key``. Raises SendError when the provider refuses."""
        if (text is None) == (template is None):
            raise ValueError("send exactly one of text or template")
        channel = self._channel(target)
        method = SendMethod.campaign if template else SendMethod.direct
        if text is not None and target.channel == ChannelName.whatsapp:
            # Cut here, before the ledger records it: the ledger's body is the one sent.
            text = truncate_words(text, WHATSAPP_BODY_LIMIT)
        body = template.body if template else (text or "")
        delivery, recovered = await self._claim(
            notification_id, key, kind, target, channel, method, body, template
        )
        if delivery.status in ACCEPTED_STATUSES and delivery.provider_message_id:
            if recovered:
                # An earlier attempt's message, found at the provider: write the history that
                # attempt could not (the ledger row is already marked sent).
                await self._record_success(
                    delivery.id,
                    target,
                    kind,
                    key,
                    delivery.body,
                    template,
                    SendResult(provider_message_id=delivery.provider_message_id),
                    other_data or {},
                    notification_id,
                )
            return Sent(delivery.provider_message_id, SendMethod(delivery.method), duplicate=True)

        try:
            if template is not None:
                result: SendResult = await channel.send_template(
                    OutboundTemplate(
                        to=target.to,
                        sender=target.sender,
                        content_sid=template.content_sid,
                        variables=template.variables,
                        rendered_body=template.body,
                        idempotency_key=key,
                    )
                )
            else:
                result = await channel.send_text(
                    OutboundText(
                        to=target.to,
                        sender=target.sender,
                        body=body,
                        idempotency_key=key,
                        human_agent=human_agent,
                    )
                )
        except SendError as err:
            if not (err.retryable or err.ambiguous):
                _count_delivery("refused", kind, method)
            await self._record_failure(delivery.id, err)
            raise
        await self._record_success(
            delivery.id,
            target,
            kind,
            key,
            body,
            template,
            result,
            other_data or {},
            notification_id,
        )
        return Sent(result.provider_message_id, method, duplicate=False)

    async def _claim(
        self,
        notification_id: int,
        key: str,
        kind: DeliveryKind,
        target: Target,
        channel: Channel,
        method: SendMethod,
        body: str,
        template: RenderedTemplate | None,
    ) -> tuple[Delivery, bool]:
        """The ledger row for ``key``, and whether an earlier attempt's message was just
        found at the provider."""
        async with self._db() as session:
            # Insert first: the common case (a first attempt) costs one statement; the unique
            # key turns a retry's insert into a read of the earlier attempt's row.
            row = await self._insert_claim(
                session, notification_id, key, kind, target, channel, method, body, template
            )
            if row is not None:
                return row, False
            row = await session.scalar(select(Delivery).where(Delivery.idempotency_key == key))
            assert row is not None
            if row.status in ACCEPTED_STATUSES:
                return row, False
            if row.status in FAILED_STATUSES:
                # The provider refused this very message for good (or a status callback said
                # it failed): sending it again under the same key would be a second message.
                raise SendError(
                    row.error_code or "failed",
                    row.error_message or "refused earlier",
                    window_closed=closes_window(row.error_code),
                )
            return await self._reclaim(session, row, target, channel, method, body, template)

    @staticmethod
    async def _insert_claim(
        session: AsyncSession,
        notification_id: int,
        key: str,
        kind: DeliveryKind,
        target: Target,
        channel: Channel,
        method: SendMethod,
        body: str,
        template: RenderedTemplate | None,
    ) -> Delivery | None:
        """The new ledger row, or None when ``key`` already has one."""
        row = Delivery(
            notification_id=notification_id,
            idempotency_key=key,
            kind=kind,
            recipient_kind=target.recipient_kind,
            merchant_user_id=target.merchant_user_id,
            conversation_id=target.conversation_id,
            method=method,
            channel=ChannelName.console if channel.name == ChannelName.console else target.channel,
            to_address=target.to,
            campaign=template.campaign if template else None,
            body=body,
            attempts=1,
        )
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return None
        return row

    @staticmethod
    async def _reclaim(
        session: AsyncSession,
        row: Delivery,
        target: Target,
        channel: Channel,
        method: SendMethod,
        body: str,
        template: RenderedTemplate | None,
    ) -> tuple[Delivery, bool]:
        """A retry of a send that got no clear answer: find the earlier message at the provider,
        or count one more attempt."""
        # A previous attempt got no clear answer (crash, 5xx, timeout): ask the provider
        # whether it took the message before sending it again.
        if row.attempts > 0 and row.error_code in (None, "ambiguous"):
            found = await channel.find_accepted(
                to=target.to,
                sender=target.sender,
                since=row.created_at,
                # What the earlier attempt sent, not what this one would send: a retry
                # composes an LLM reply anew, in other words. The rendered body, not the
                # Content SID: Twilio's message resource does not echo the SID.
                body_or_content_sid=row.body or body,
            )
            if found:
                row.status = "sent"
                row.provider_message_id = found
                await session.commit()
                return row, True
        row.attempts += 1
        row.method = method
        row.body = body
        row.campaign = template.campaign if template else None
        await session.commit()
        return row, False

    async def _record_failure(self, delivery_id: int, err: SendError) -> None:
        values: dict[str, Any] = {
            "error_code": "ambiguous" if err.ambiguous else err.code,
            "error_message": err.message[:2000],
            "updated_at": utcnow(),
        }
        if not (err.retryable or err.ambiguous):
            values["status"] = "failed"

        async with self._db() as session:
            await session.execute(
                update(Delivery).where(Delivery.id == delivery_id).values(**values)
            )
            await session.commit()

    async def _record_success(
        self,
        delivery_id: int,
        target: Target,
        kind: DeliveryKind,
        key: str,
        body: str,
        template: RenderedTemplate | None,
        result: SendResult,
        other_data: dict[str, Any],
        notification_id: int,
    ) -> None:
        _count_delivery("accepted", kind, "campaign" if template else "direct")
        payload: dict[str, Any]
        if template is not None:
            # The agent's history shows template sends (whatsapp_payload.type == "template").
            payload = {
                "type": "template",
                "campaign": template.campaign,
                "language": template.language,
                "content_sid": template.content_sid,
                "variables": template.variables,
            }
        else:
            payload = {"type": "text"}
        async with self._db() as session:
            # One transaction: the ledger says sent exactly when the history shows the message.
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(
                    status="sent",
                    provider_message_id=result.provider_message_id,
                    error_code=None,
                    error_message=None,
                    updated_at=utcnow(),
                )
            )
            session.add(
                Message(
                    conversation_id=target.conversation_id,
                    role=MessageRole.assistant,
                    content=body,
                    other_data={
                        "notification_id": notification_id,
                        "kind": kind,
                        "delivery_key": key,
                        **other_data,
                    },
                    whatsapp_payload=payload,
                )
            )
            await session.commit()
