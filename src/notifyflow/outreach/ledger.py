"""Sends through the delivery ledger: one row per idempotency key (notification, step,
recipient), so a retried activity never messages a person twice once the provider accepted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
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
from notifyflow.db.session import SessionFactory, autocommit, ping_on_checkout
from notifyflow.db.statements import (
    Writes,
    dialect_name,
    factory_dialect,
    insert_rows,
    update_rows,
)
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

# Sends of one step in flight at once: a fan-out to twenty admins takes about the time of a
# few sends, well under Twilio's per-account limit of concurrent requests (error 20429).
SEND_CONCURRENCY = 8


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
        (result,) = await self.send_many(
            notification_id=notification_id,
            kind=kind,
            sends=[Send(key, target, text, template, human_agent, other_data)],
        )
        if isinstance(result, BaseException):
            raise result
        return result

    async def send_many(
        self,
        *,
        notification_id: int,
        kind: DeliveryKind,
        sends: Sequence[Send],
        concurrency: int = SEND_CONCURRENCY,
        claim_with: ClaimWith = (),
        record_with: RecordWith | None = None,
        on_claimed: Callable[[], None] | None = None,
    ) -> list[Sent | BaseException]:
        """Each send once per its key, the provider called for several at once (at most
        ``concurrency`` in flight): one statement claims every ledger row, one transaction
        records every outcome, so a fan-out to twenty people costs the SQL of one.

        Returns, in the order of ``sends``, what each came to: :class:`Sent`, or the
        :class:`SendError` the provider (or the ledger, for a message refused earlier)
        answered, or any other exception its call raised. Every outcome is recorded before
        this returns.

        ``claim_with``: the step's own writes (recipients, the answer), committed with the
        ledger's claim, in the same statement on PostgreSQL (:class:`Writes`): what the step
        decided and what it is about to send are recorded together or not at all.
        ``on_claimed``: called once the claim (and ``claim_with``) is committed.
        ``record_with``: given the results, the step's write that follows from them (the
        notification's outcome), committed with the record of the sends."""
        if len({s.key for s in sends}) != len(sends):
            raise ValueError("one key per send")
        if not sends:
            # Nothing to send; the step's own writes still go in.
            await self.write(claim_with)
            if on_claimed is not None:
                on_claimed()
            return []
        prepared = [self._prepare(s, kind) for s in sends]
        claims = await self._claim_many(notification_id, prepared, claim_with, on_claimed)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def call(p: _Prepared) -> SendResult:
            async with gate:
                return await self._call(p)

        to_send = [p for p in prepared if claims[p.send.key].delivery is not None]
        called = await asyncio.gather(*(call(p) for p in to_send), return_exceptions=True)
        outcome = dict(zip((p.send.key for p in to_send), called, strict=True))

        results: list[Sent | BaseException] = []
        accepted: list[tuple[_Prepared, int, str, str]] = []
        refused: list[tuple[int, SendError]] = []
        for p in prepared:
            claim = claims[p.send.key]
            if claim.result is not None:
                results.append(claim.result)
                if claim.recovered and isinstance(claim.result, Sent) and claim.delivery_id:
                    # An earlier attempt's message, found at the provider: write the history
                    # that attempt could not (the ledger row is already marked sent).
                    accepted.append(
                        (
                            p,
                            claim.delivery_id,
                            claim.result.provider_message_id,
                            claim.body or p.body,
                        )
                    )
                continue
            assert claim.delivery_id is not None
            got = outcome[p.send.key]
            if isinstance(got, SendError):
                if not (got.retryable or got.ambiguous):
                    _count_delivery("refused", p.kind, p.method)
                refused.append((claim.delivery_id, got))
                results.append(got)
            elif isinstance(got, BaseException):
                # Not an answer from the provider (a bug, a cancellation): the row stays
                # pending, and a retry asks the provider before sending again.
                results.append(got)
            else:
                accepted.append((p, claim.delivery_id, got.provider_message_id, p.body))
                results.append(Sent(got.provider_message_id, p.method, duplicate=False))
        follow = record_with(results) if record_with is not None else None
        await self._record(notification_id, accepted, refused, follow)
        return results

    async def write(self, claim_with: ClaimWith) -> None:
        """A step's own writes, in a transaction of their own (when they have no send to
        ride with)."""
        if not callable(claim_with) and not claim_with:
            return
        async with self._db() as session:
            await autocommit(session)  # one statement on PostgreSQL (Writes)
            # Built once a connection is held: what they stamp is when they are written.
            statements = built(claim_with)
            if not statements:
                return
            await _run(session, statements)
            await session.commit()

    def _prepare(self, send: Send, kind: DeliveryKind) -> _Prepared:
        if (send.text is None) == (send.template is None):
            raise ValueError("send exactly one of text or template")
        channel = self._channel(send.target)
        method = SendMethod.campaign if send.template else SendMethod.direct
        text = send.text
        if text is not None and send.target.channel == ChannelName.whatsapp:
            # Cut here, before the ledger records it: the ledger's body is the one sent.
            text = truncate_words(text, WHATSAPP_BODY_LIMIT)
        body = send.template.body if send.template else (text or "")
        return _Prepared(send, send.kind or kind, channel, method, body)

    @staticmethod
    async def _call(p: _Prepared) -> SendResult:
        send = p.send
        if send.template is not None:
            return await p.channel.send_template(
                OutboundTemplate(
                    to=send.target.to,
                    sender=send.target.sender,
                    content_sid=send.template.content_sid,
                    variables=send.template.variables,
                    rendered_body=send.template.body,
                    idempotency_key=send.key,
                )
            )
        return await p.channel.send_text(
            OutboundText(
                to=send.target.to,
                sender=send.target.sender,
                body=p.body,
                idempotency_key=send.key,
                human_agent=send.human_agent,
            )
        )

    async def _claim_many(
        self,
        notification_id: int,
        prepared: list[_Prepared],
        claim_with: ClaimWith,
        on_claimed: Callable[[], None] | None = None,
    ) -> dict[str, _Claim]:
        """Every send's ledger row, by key: new rows in one ``INSERT … ON CONFLICT DO
        NOTHING RETURNING`` (the common case, a first attempt, costs that one statement); a
        key that has a row already (a retry) is read, and decided as the single send was."""
        claims: dict[str, _Claim] = {}
        async with self._db() as session:
            # The claim (with the step's own writes) is one statement on PostgreSQL, atomic on
            # its own: no transaction around it.
            await autocommit(session)
            # Stamped once a connection is held (a wait for the pool falls before, not between
            # the stamps and the commit); built before the claim's own time, so what they stamp
            # comes before the sends.
            extras = built(claim_with)
            now = utcnow()
            rows = [
                {
                    "notification_id": notification_id,
                    "idempotency_key": p.send.key,
                    "kind": str(p.kind),
                    "recipient_kind": str(p.send.target.recipient_kind),
                    "merchant_user_id": p.send.target.merchant_user_id,
                    "conversation_id": p.send.target.conversation_id,
                    "method": str(p.method),
                    "channel": str(
                        ChannelName.console
                        if p.channel.name == ChannelName.console
                        else p.send.target.channel
                    ),
                    "to_address": p.send.target.to,
                    "campaign": p.send.template.campaign if p.send.template else None,
                    "body": p.body,
                    "status": "pending",
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for p in prepared
            ]
            stmt = insert_rows(
                dialect_name(session),
                Delivery,
                rows,
                unique=["idempotency_key"],
                returning=["id", "idempotency_key"],
            )
            writes = Writes()
            for extra in extras:
                writes.add(extra)
            claimed = await writes.run(session, stmt)
            assert claimed is not None
            for row in claimed.all():
                claims[row.idempotency_key] = _Claim(delivery_id=row.id)
            await session.commit()
        # Committed: what the step decided is recorded (a retry finds it recorded).
        if on_claimed is not None:
            on_claimed()
        earlier = [p for p in prepared if p.send.key not in claims]
        if earlier:
            # A retry: the rows an earlier attempt claimed are read and decided in one
            # transaction of their own (a failure there, e.g. the provider's lookup, leaves
            # them as they were).
            async with self._db() as session:
                found = {
                    row.idempotency_key: row
                    for row in await session.scalars(
                        select(Delivery).where(
                            Delivery.idempotency_key.in_([p.send.key for p in earlier])
                        )
                    )
                }
                for p in earlier:
                    claims[p.send.key] = await self._decide(session, found[p.send.key], p)
                await session.commit()
        return claims

    @staticmethod
    async def _decide(session: AsyncSession, row: Delivery, p: _Prepared) -> _Claim:
        """A key the ledger has seen: done, refused for good, or to be sent (again)."""
        if row.status in ACCEPTED_STATUSES and row.provider_message_id:
            return _Claim(
                delivery_id=row.id,
                result=Sent(row.provider_message_id, SendMethod(row.method), duplicate=True),
            )
        if row.status in FAILED_STATUSES:
            # The provider refused this very message for good (or a status callback said
            # it failed): sending it again under the same key would be a second message.
            return _Claim(
                delivery_id=row.id,
                result=SendError(
                    row.error_code or "failed",
                    row.error_message or "refused earlier",
                    window_closed=closes_window(row.error_code),
                ),
            )
        target = p.send.target
        # A previous attempt got no clear answer (crash, 5xx, timeout): ask the provider
        # whether it took the message before sending it again.
        if row.attempts > 0 and row.error_code in (None, "ambiguous"):
            found = await p.channel.find_accepted(
                to=target.to,
                sender=target.sender,
                since=row.created_at,
                # What the earlier attempt sent, not what this one would send: a retry
                # composes an LLM reply anew, in other words. The rendered body, not the
                # Content SID: Twilio's message resource does not echo the SID.
                body_or_content_sid=row.body or p.body,
            )
            if found:
                row.status = "sent"
                row.provider_message_id = found
                sent = Sent(found, SendMethod(row.method), duplicate=True)
                # The history that attempt could not write is written with this call's.
                return _Claim(delivery_id=row.id, result=sent, recovered=True, body=row.body)
        row.attempts += 1
        row.method = p.method
        row.body = p.body
        row.campaign = p.send.template.campaign if p.send.template else None
        return _Claim(delivery_id=row.id)

    async def _record(
        self,
        notification_id: int,
        accepted: list[tuple[_Prepared, int, str, str]],
        refused: list[tuple[int, SendError]],
        follow: Follow | None = None,
    ) -> None:
        """Every outcome of one step in one transaction: the ledger says sent exactly when
        the history shows the message (one UPDATE and one multi-row INSERT for all the
        accepted sends)."""
        if not accepted and not refused and follow is None:
            return
        now = utcnow()
        writes = Writes()
        if accepted:
            writes.add(
                update_rows(
                    factory_dialect(self._db),
                    Delivery,
                    [{"id": d, "provider_message_id": pmid} for _, d, pmid, _ in accepted],
                    key="id",
                    same={
                        "status": "sent",
                        "error_code": None,
                        "error_message": None,
                        "updated_at": now,
                    },
                    name="sent",
                )
            )
            writes.add(
                insert_rows(
                    factory_dialect(self._db),
                    Message,
                    [_history_row(p, body, notification_id, now) for p, _, _, body in accepted],
                )
            )
        for delivery_id, err in refused:
            values: dict[str, Any] = {
                "error_code": "ambiguous" if err.ambiguous else err.code,
                "error_message": err.message[:2000],
                "updated_at": now,
            }
            if not (err.retryable or err.ambiguous):
                values["status"] = "failed"
            writes.add(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        # The provider has the messages: the connection is tested before this record, however
        # recently it was used (a dropped one would fail the attempt, and its retry would have
        # to find the sends at the provider, which Instagram cannot).
        with ping_on_checkout():
            async with self._db() as session:
                await autocommit(session)  # one statement on PostgreSQL (Writes)
                if follow is None:
                    await writes.run(session)
                    changed = False
                else:
                    result = await writes.run(session, follow.statement)
                    changed = result is not None and result.first() is not None
                await session.commit()
        if follow is not None:
            follow.done(changed)
        for p, _, _, _ in accepted:
            _count_delivery("accepted", p.kind, p.method)


@dataclass(frozen=True)
class Follow:
    """A write that follows from a step's results, committed with their record: one
    statement with ``RETURNING`` (a row back means it changed something), and who is told."""

    statement: Any
    done: Callable[[bool], None]


# Given a step's results (in the order of its sends), the write that follows from them.
RecordWith = Callable[[list["Sent | BaseException"]], Follow | None]

# A step's own writes, committed with the claim of its sends: statements, or a function that
# builds them at the claim, so that a time they carry is when they are written (an accepted
# answer waits for its reply to be composed between the step's start and the claim).
ClaimWith = Sequence[Any] | Callable[[], Sequence[Any]]


def built(claim_with: ClaimWith) -> Sequence[Any]:
    return claim_with() if callable(claim_with) else claim_with


@dataclass(frozen=True)
class Send:
    """One message of a step: to whom, under which idempotency key, text or template."""

    key: str
    target: Target
    text: str | None = None
    template: RenderedTemplate | None = None
    human_agent: bool = False
    other_data: dict[str, Any] | None = None
    # The step this send belongs to, when it is not the call's (a closure notice sent with
    # the customer's answer).
    kind: DeliveryKind | None = None


@dataclass(frozen=True)
class _Prepared:
    send: Send
    kind: DeliveryKind
    channel: Channel
    method: SendMethod
    body: str


@dataclass(frozen=True)
class _Claim:
    """What the ledger decided for a key: a row to send under (``result`` None), or the
    answer an earlier attempt already got."""

    delivery_id: int | None = None
    result: Sent | SendError | None = None
    recovered: bool = False
    body: str | None = None

    @property
    def delivery(self) -> int | None:
        return self.delivery_id if self.result is None else None


async def _run(session: AsyncSession, statements: Sequence[Any]) -> None:
    writes = Writes()
    for stmt in statements:
        writes.add(stmt)
    await writes.run(session)


def _history_row(p: _Prepared, body: str, notification_id: int, now: datetime) -> dict[str, Any]:
    """The message as the conversation's history shows it."""
    payload: dict[str, Any]
    template = p.send.template
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
    return {
        "conversation_id": p.send.target.conversation_id,
        "role": MessageRole.assistant.value,
        "content": body,
        "other_data": {
            "notification_id": notification_id,
            "kind": str(p.kind),
            "delivery_key": p.send.key,
            **(p.send.other_data or {}),
        },
        "whatsapp_payload": payload,
        "created_at": now,
    }
