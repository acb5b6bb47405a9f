"""Outreach: the one way the product reaches a person.

Merchant users are asked (the request campaign), reminded and told (free-form inside their own
24 h window, else a template); the customer gets the answer or the expiry notice by the 24-hour
rule decided at send time, on WhatsApp or Instagram. Every send goes through the delivery ledger
(:mod:`notifyflow.outreach.ledger`) under a key from :mod:`notifyflow.outreach.keys`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from notifyflow.ai.base import Localized
from notifyflow.channels.base import SendError
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    CampaignTemplate,
    Conversation,
    Merchant,
    MerchantUser,
    Notification,
)
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import (
    NOTIFICATION_CONFIG,
    Campaign,
    NotificationType,
    headline,
)
from notifyflow.models.vocabulary import (
    ChannelName,
    DeliveryKind,
    RecipientKind,
    SendMethod,
)
from notifyflow.outreach import keys
from notifyflow.outreach.contacts import CustomerContact
from notifyflow.outreach.errors import ConfigurationError, retry_later
from notifyflow.outreach.ledger import Sender, Sent, Target
from notifyflow.outreach.members import Member, member_conversations
from notifyflow.outreach.policy import Outcome, instagram_decision, shortened_variable, window_open
from notifyflow.outreach.templates import RenderedTemplate, TemplateMissing, find_template, render

log = logging.getLogger(__name__)

# Writes the free-form reply to the customer inside the window (the LLM's composition, or the
# localized sentence as it is).
Compose = Callable[[Conversation, str, str], Awaitable[str]]


@dataclass(frozen=True)
class Notice:
    """A message to merchant users: ``text`` free-form inside a member's own 24 h window, else
    ``campaign`` rendered with ``values``."""

    kind: DeliveryKind
    text: str
    campaign: Campaign
    values: list[str]
    # Several notices of one kind (the customer's follow-ups) each have their own ledger key.
    part: int | None = None

    @classmethod
    def plain(cls, kind: DeliveryKind, text: str) -> Notice:
        """A notice whose template carries the same text as its one variable."""
        return cls(kind, text, Campaign.notification_closed, [text])


class Outreach:
    """Built once per worker (``worker.py``) and shared by every activity class."""

    def __init__(self, db: SessionFactory, sender: Sender) -> None:
        self._db = db
        self._sender = sender

    # ---- merchant users -------------------------------------------------------------------

    async def members(self, merchant: Merchant, users: Sequence[MerchantUser]) -> dict[int, Member]:
        """Each user's own conversation with the merchant, created when missing."""
        return await member_conversations(
            self._db, merchant.id, merchant.default_language, list(users)
        )

    async def template(
        self, campaign: Campaign, language: str | None, merchant: Merchant
    ) -> CampaignTemplate:
        """The campaign's template, a missing one being a ConfigurationError."""
        try:
            async with self._db() as session:
                return await find_template(
                    session, campaign.value, language, merchant.id, merchant.default_language
                )
        except TemplateMissing as exc:
            raise ConfigurationError(str(exc)) from None

    async def ask(
        self,
        notification: Notification,
        merchant: Merchant,
        members: dict[int, Member],
        kind: DeliveryKind,
    ) -> int:
        """The request campaign to each member (first ask or escalation)."""
        cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
        public = format_notification_id(notification.id)
        template = await self.template(cfg.requested_campaign, merchant.default_language, merchant)
        rendered = render(template, [public, headline(notification.type, notification.context)])
        return await self._fan_out(
            notification.id,
            [
                (keys.member_key(notification.id, kind, m.user.id), _member_target(merchant, m))
                for m in members.values()
            ],
            kind,
            rendered=rendered,
        )

    async def notify_members(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
        *,
        best_effort: bool = False,
    ) -> int:
        """Free-form where the member's own 24 h window is open, else the campaign template.

        ``best_effort``: a notice about a notification that has already reached its outcome
        (closure, the answerer told of a failed delivery): a configuration error is logged, not
        raised, so the outcome stands; anything retryable is still retried through the ledger."""
        try:
            return await self._notify(notification_id, merchant, users, notice)
        except ConfigurationError as err:
            if not best_effort:
                raise
            log.error("notices not sent: %s", err.message)
            return 0

    async def _notify(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
    ) -> int:
        members = await self.members(merchant, users)
        now = utcnow()
        direct: list[tuple[str, Target]] = []
        templated: list[tuple[str, Target]] = []
        for m in members.values():
            key = keys.member_key(notification_id, notice.kind, m.user.id, notice.part)
            pair = (key, _member_target(merchant, m))
            (direct if window_open(m.conversation.last_inbound_at, now) else templated).append(pair)
        sent = 0
        if direct:
            sent += await self._fan_out(notification_id, direct, notice.kind, text=notice.text)
        if templated:
            template = await self.template(notice.campaign, merchant.default_language, merchant)
            sent += await self._fan_out(
                notification_id, templated, notice.kind, rendered=render(template, notice.values)
            )
        return sent

    async def _fan_out(
        self,
        notification_id: int,
        targets: list[tuple[str, Target]],
        kind: DeliveryKind,
        *,
        rendered: RenderedTemplate | None = None,
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

    # ---- the customer ---------------------------------------------------------------------

    async def reach_customer(
        self,
        notification_id: int,
        kind: DeliveryKind,
        contact: CustomerContact,
        localized: Localized,
        campaign: Campaign,
        *,
        compose: Compose | None = None,
        part: int | None = None,
    ) -> Outcome:
        """The 24-hour rule, decided now: free-form inside the window, the campaign outside
        it, and the campaign again when the provider says the window has closed after all.
        ``compose``: writes the free-form body from the localized sentence. ``part``: one of
        several sends of one kind (a correction's version), in its ledger keys."""
        public = format_notification_id(notification_id)
        now = utcnow()
        merchant, conversation = contact.merchant, contact.conversation
        last = conversation.last_inbound_at
        language = contact.language
        if conversation.channel == ChannelName.instagram:
            return await self._reach_instagram(
                notification_id, kind, contact, localized, now, part=part
            )
        target = customer_target(contact)
        if not target.to:
            return Outcome(False, None, None, "the customer has no phone number")
        if window_open(last, now):
            body = (
                await compose(conversation, localized.full_sentence, language)
                if compose
                else localized.full_sentence
            )
            try:
                sent = await self._sender.send(
                    notification_id=notification_id,
                    key=keys.customer_key(notification_id, kind, part),
                    kind=kind,
                    target=target,
                    text=body,
                )
                return Outcome(True, SendMethod.direct, sent.provider_message_id, None)
            except SendError as err:
                if not err.window_closed:
                    return _failed_or_raise(err)
                log.info("%s: free-form refused (window closed); sending the template", public)
        try:
            async with self._db() as session:
                template = await find_template(
                    session, campaign.value, language, merchant.id, merchant.default_language
                )
        except TemplateMissing as exc:
            return Outcome(False, SendMethod.campaign, None, f"configuration error: {exc}")
        try:
            sent = await self.send_customer_template(
                notification_id, kind, target, template, localized.continuation_fragment, part=part
            )
        except SendError as err:
            return _failed_or_raise(err, method=SendMethod.campaign)
        return Outcome(True, SendMethod.campaign, sent.provider_message_id, None)

    async def send_customer_template(
        self,
        notification_id: int,
        kind: DeliveryKind,
        target: Target,
        template: CampaignTemplate,
        fragment: str,
        *,
        other_data: dict[str, Any] | None = None,
        shorten_on_refusal: bool = True,
        part: int | None = None,
    ) -> Sent:
        """The customer's template, under the one key every path uses for it; when the
        provider's copy of the template is stricter than ours (63013 whitespace, 63021 too
        long), once more with a plain, shorter variable. Raises SendError."""
        key = keys.customer_template_key(notification_id, kind, part)
        try:
            return await self._sender.send(
                notification_id=notification_id,
                key=key,
                kind=kind,
                target=target,
                template=render(template, [fragment]),
                other_data=other_data,
            )
        except SendError as err:
            if not (shorten_on_refusal and err.variable_refused):
                raise
            log.warning(
                "%s: template variable refused (%s); shortening it",
                format_notification_id(notification_id),
                err.code,
            )
        return await self._sender.send(
            notification_id=notification_id,
            key=keys.shortened_key(key),
            kind=kind,
            target=target,
            template=render(template, [shortened_variable(fragment)]),
            other_data=other_data,
        )

    async def _reach_instagram(
        self,
        notification_id: int,
        kind: DeliveryKind,
        contact: CustomerContact,
        localized: Localized,
        now: datetime,
        *,
        part: int | None = None,
    ) -> Outcome:
        merchant, conversation, customer = contact.merchant, contact.conversation, contact.customer
        decision = instagram_decision(conversation.last_inbound_at, now, kind)
        if not decision.allowed:
            return Outcome(False, None, None, decision.reason)
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
                key=keys.customer_key(notification_id, kind, part),
                kind=kind,
                target=target,
                text=localized.full_sentence,
                human_agent=decision.human_agent,
            )
        except SendError as err:
            return _failed_or_raise(err)
        return Outcome(True, SendMethod.direct, sent.provider_message_id, None)


def customer_target(contact: CustomerContact) -> Target:
    """The customer on WhatsApp, recorded in their conversation."""
    return Target(
        conversation_id=contact.conversation.id,
        channel=ChannelName.whatsapp,
        to=contact.customer.phone or "",
        sender=contact.merchant.whatsapp_sender,
        recipient_kind=RecipientKind.customer,
    )


def _member_target(merchant: Merchant, member: Member) -> Target:
    return Target(
        conversation_id=member.conversation.id,
        channel=ChannelName.whatsapp,
        to=member.user.phone,
        sender=merchant.whatsapp_sender,
        recipient_kind=RecipientKind.merchant_user,
        merchant_user_id=member.user.id,
    )


def _failed_or_raise(err: SendError, method: SendMethod | None = SendMethod.direct) -> Outcome:
    if err.retryable or err.ambiguous:
        raise retry_later(err)
    prefix = "configuration error: " if err.config_error else ""
    return Outcome(False, method, None, f"{prefix}{err.code}: {err.message}")
