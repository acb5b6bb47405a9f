"""Outreach: the one way the product reaches a person.

Merchant users are asked (the request campaign), reminded and told (free-form inside their own
24 h window, else a template); the customer gets the answer or the expiry notice by the 24-hour
rule decided at send time, on WhatsApp or Instagram. Every send goes through the delivery ledger
(:mod:`notifyflow.outreach.ledger`) under a key from :mod:`notifyflow.outreach.keys`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from notifyflow.outreach.ledger import ClaimWith, Follow, Send, Sender, Sent, Target
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

    async def members(
        self,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        known: Mapping[int, Member] | None = None,
    ) -> dict[int, Member]:
        """Each user's own conversation with the merchant, created when missing. ``known``:
        members already loaded (:class:`~notifyflow.outreach.members.Roster`): only the
        others are looked up, so the common case costs no statement here."""
        have = {u.id: known[u.id] for u in users if known and u.id in known}
        missing = [u for u in users if u.id not in have]
        if missing:
            have.update(
                await member_conversations(
                    self._db, merchant.id, merchant.default_language, missing
                )
            )
        return {u.id: have[u.id] for u in users}

    async def template(
        self, campaign: Campaign, language: str | None, merchant: Merchant
    ) -> CampaignTemplate:
        """The campaign's template, a missing one being a ConfigurationError."""
        try:
            return await find_template(
                self._db, campaign.value, language, merchant.id, merchant.default_language
            )
        except TemplateMissing as exc:
            raise ConfigurationError(str(exc)) from None

    async def ask(
        self,
        notification: Notification,
        merchant: Merchant,
        members: dict[int, Member],
        kind: DeliveryKind,
        *,
        claim_with: ClaimWith = (),
    ) -> int:
        """The request campaign to each member (first ask or escalation). ``claim_with``: the
        routing's own writes, committed with the claim of these sends."""
        cfg = NOTIFICATION_CONFIG[NotificationType(notification.type)]
        public = format_notification_id(notification.id)
        template = await self.template(cfg.requested_campaign, merchant.default_language, merchant)
        rendered = render(template, [public, headline(notification.type, notification.context)])
        return await self._fan_out(
            notification.id,
            [
                Send(
                    keys.member_key(notification.id, kind, m.user.id),
                    _member_target(merchant, m),
                    template=rendered,
                )
                for m in members.values()
            ],
            kind,
            claim_with=claim_with,
        )

    async def notify_members(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
        *,
        best_effort: bool = False,
        known: Mapping[int, Member] | None = None,
    ) -> int:
        """Free-form where the member's own 24 h window is open, else the campaign template.

        ``best_effort``: a notice about a notification that has already reached its outcome
        (closure, the answerer told of a failed delivery): a configuration error is logged, not
        raised, so the outcome stands; anything retryable is still retried through the ledger."""
        try:
            return await self._notify(notification_id, merchant, users, notice, known)
        except ConfigurationError as err:
            if not best_effort:
                raise
            log.error("notices not sent: %s", err.message)
            return 0

    async def notice_sends(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
        known: Mapping[int, Member] | None = None,
    ) -> list[Send]:
        """The notice's sends, one per member: free-form inside the member's own window,
        else the campaign template (a missing one is a ConfigurationError)."""
        members = await self.members(merchant, users, known)
        now = utcnow()
        sends: list[Send] = []
        rendered: RenderedTemplate | None = None
        for m in members.values():
            key = keys.member_key(notification_id, notice.kind, m.user.id, notice.part)
            target = _member_target(merchant, m)
            if window_open(m.conversation.last_inbound_at, now):
                sends.append(Send(key, target, text=notice.text, kind=notice.kind))
                continue
            if rendered is None:
                template = await self.template(notice.campaign, merchant.default_language, merchant)
                rendered = render(template, notice.values)
            sends.append(Send(key, target, template=rendered, kind=notice.kind))
        return sends

    async def _notify(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
        known: Mapping[int, Member] | None = None,
    ) -> int:
        sends = await self.notice_sends(notification_id, merchant, users, notice, known)
        return await self._fan_out(notification_id, sends, notice.kind)

    async def _fan_out(
        self,
        notification_id: int,
        sends: list[Send],
        kind: DeliveryKind,
        *,
        claim_with: ClaimWith = (),
    ) -> int:
        """Send to several people at once; a permanent refusal for one person is logged and
        does not stop the others; a retryable one fails the activity (the ledger skips the
        sends that went through when Temporal retries)."""
        if not sends and not claim_with:
            return 0
        results = await self._sender.send_many(
            notification_id=notification_id, kind=kind, sends=sends, claim_with=claim_with
        )
        return tally(sends, results)

    async def write(self, statements: Sequence[Any]) -> None:
        """A step's own writes, on their own (when no send carries them)."""
        await self._sender.write(statements)

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
        alongside: Sequence[Send] = (),
        claim_with: ClaimWith = (),
        outcome_with: Callable[[Outcome], Any] | None = None,
        part: int | None = None,
        on_claimed: Callable[[], None] | None = None,
    ) -> Reached:
        """The 24-hour rule, decided now: free-form inside the window, the campaign outside
        it, and the campaign again when the provider says the window has closed after all.
        ``compose``: writes the free-form body from the localized sentence. ``part``: one of
        several sends of one kind (a correction's version), in its ledger keys.
        ``alongside``: notices to merchant users about the same step, sent with the customer's
        message: one ledger claim and one record for all of them on the common path (inside
        the window); their results come back in order.
        ``claim_with``: the step's own writes (the answer), committed with the claim of the
        customer's message, or on their own before any send on the other paths.
        ``outcome_with``: the statement (with ``RETURNING``) that records an outcome,
        committed with the record of the customer's message where the outcome is known then
        (``Reached.recorded``). ``on_claimed``: called once ``claim_with`` is committed."""
        extra = list(alongside)
        reached = await self._reach(
            notification_id,
            kind,
            contact,
            localized,
            campaign,
            compose,
            extra,
            claim_with,
            outcome_with,
            part,
            on_claimed,
        )
        if extra and reached.alongside is None:
            # Not sent with the customer's message (Instagram, a template, no phone): alone.
            results = await self._sender.send_many(
                notification_id=notification_id, kind=kind, sends=extra
            )
            return Reached(reached.outcome, results)
        return reached

    async def _reach(
        self,
        notification_id: int,
        kind: DeliveryKind,
        contact: CustomerContact,
        localized: Localized,
        campaign: Campaign,
        compose: Compose | None,
        alongside: list[Send],
        claim_with: ClaimWith,
        outcome_with: Callable[[Outcome], Any] | None,
        part: int | None = None,
        on_claimed: Callable[[], None] | None = None,
    ) -> Reached:
        public = format_notification_id(notification_id)
        now = utcnow()
        conversation = contact.conversation
        last = conversation.last_inbound_at
        language = contact.language
        target = customer_target(contact)
        inside = conversation.channel != ChannelName.instagram and bool(target.to)
        inside = inside and window_open(last, now)
        if not inside:
            await self._sender.write(claim_with)
            if on_claimed is not None:
                on_claimed()
        if conversation.channel == ChannelName.instagram:
            return Reached(
                await self._reach_instagram(
                    notification_id, kind, contact, localized, now, part=part
                )
            )
        if not target.to:
            return Reached(Outcome(False, None, None, "the customer has no phone number"))
        if inside:
            body = (
                await compose(conversation, localized.full_sentence, language)
                if compose
                else localized.full_sentence
            )
            customer = Send(keys.customer_key(notification_id, kind, part), target, text=body)
            decided: list[bool] = []

            def record_with(results: list[Sent | BaseException]) -> Follow | None:
                outcome = _decided(results[0])
                if outcome is None or outcome_with is None:
                    return None
                return Follow(outcome_with(outcome), decided.append)

            first, *along = await self._sender.send_many(
                notification_id=notification_id,
                kind=kind,
                sends=[customer, *alongside],
                claim_with=claim_with,
                record_with=record_with,
                on_claimed=on_claimed,
            )
            if isinstance(first, Sent):
                return Reached(
                    Outcome(True, SendMethod.direct, first.provider_message_id, None),
                    along,
                    recorded=bool(decided),
                    first_record=any(decided),
                )
            if not isinstance(first, SendError):
                raise first
            if not first.window_closed:
                return Reached(
                    _failed_or_raise(first),
                    along,
                    recorded=bool(decided),
                    first_record=any(decided),
                )
            log.info("%s: free-form refused (window closed); sending the template", public)
            return Reached(
                await self._reach_by_template(
                    notification_id, kind, contact, localized, campaign, target, part
                ),
                along,
            )
        return Reached(
            await self._reach_by_template(
                notification_id, kind, contact, localized, campaign, target, part
            )
        )

    async def _reach_by_template(
        self,
        notification_id: int,
        kind: DeliveryKind,
        contact: CustomerContact,
        localized: Localized,
        campaign: Campaign,
        target: Target,
        part: int | None = None,
    ) -> Outcome:
        merchant = contact.merchant
        try:
            template = await find_template(
                self._db,
                campaign.value,
                contact.language,
                merchant.id,
                merchant.default_language,
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


@dataclass(frozen=True)
class Reached:
    """The customer's outcome, and what became of the sends that went with it (None: none
    went with it)."""

    outcome: Outcome
    alongside: list[Sent | BaseException] | None = None
    # The outcome was recorded with the customer's message (``outcome_with``), and this call's
    # record was the first (an earlier attempt's had not: count it now).
    recorded: bool = False
    first_record: bool = False


def _decided(result: Sent | BaseException) -> Outcome | None:
    """The customer's outcome, when a free-form send's result settles it: accepted, or
    refused for good (a closed window is not settled: the template follows)."""
    if isinstance(result, Sent):
        return Outcome(True, SendMethod.direct, result.provider_message_id, None)
    if isinstance(result, SendError):
        if result.retryable or result.ambiguous or result.window_closed:
            return None
        return _failed_or_raise(result)
    return None


def tally(sends: Sequence[Send], results: Sequence[Sent | BaseException]) -> int:
    """How many of a step's sends went through. A permanent refusal for one person is logged
    and does not stop the others; a configuration error is raised as one; a retryable one is
    raised once the others are counted (the ledger skips those when Temporal retries)."""
    sent = 0
    retry: SendError | None = None
    for send, result in zip(sends, results, strict=True):
        if isinstance(result, SendError):
            if result.config_error:
                raise ConfigurationError(f"the channel refused a send: {result}")
            if result.retryable or result.ambiguous:
                retry = result
            else:
                log.warning("send %s refused for good: %s", send.key, result)
        elif isinstance(result, BaseException):
            raise result
        else:
            sent += 1
    if retry is not None:
        raise retry_later(retry)
    return sent


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
