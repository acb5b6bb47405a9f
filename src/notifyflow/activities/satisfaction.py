"""The customer satisfaction ask (DESIGN §10), after the answer was delivered: inside the
WhatsApp 24 h window the ``customer_satisfaction_quick_reply`` content (a twilio/quick-reply sent
in session), outside it the approved ``customer_satisfaction_request`` template.

Never twice: both sends go through the delivery ledger under the notification's own keys
(``NOTIF_<n>:csat:customer`` and its ``:template``), so a retried activity, or one whose worker
died after the provider took the message, finds the send instead of repeating it; the
``csat_response`` row is written after the send, once (its primary key is the notification).

Best effort: an ask that cannot go out (no template, a permanent refusal, Instagram) is logged
and reported, never a failure of the notification; only retryable errors are raised, for
Temporal to retry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity

from notifyflow import csat
from notifyflow.activities.common import with_log_context
from notifyflow.channels.base import SendError
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Notification
from notifyflow.db.types import utcnow
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import Campaign
from notifyflow.models.vocabulary import ChannelName, DeliveryKind
from notifyflow.models.workflow_io import AskSatisfactionInput, AskSatisfactionResult
from notifyflow.outreach import keys
from notifyflow.outreach.contacts import load_contact
from notifyflow.outreach.errors import ConfigurationError, retry_later
from notifyflow.outreach.ledger import Sender
from notifyflow.outreach.policy import window_open
from notifyflow.outreach.service import Outreach, customer_target
from notifyflow.outreach.templates import render

log = logging.getLogger(__name__)


class SatisfactionActivities:
    def __init__(self, db: SessionFactory, sender: Sender, outreach: Outreach) -> None:
        self._db = db
        self._sender = sender
        self._outreach = outreach

    @activity.defn(name="ask_satisfaction")
    @with_log_context
    async def ask_satisfaction(self, input: AskSatisfactionInput) -> AskSatisfactionResult:
        n = input.notification_id
        public = format_notification_id(n)
        earlier = await csat.asked(self._db, n)
        if earlier is not None:
            return AskSatisfactionResult(asked=True, method=earlier.method)
        async with self._db() as session:
            notification = await session.get(Notification, n)
            if notification is None:
                return AskSatisfactionResult(asked=False, reason="no such notification")
            contact = await load_contact(session, notification)
        if contact.conversation.channel != ChannelName.whatsapp:
            # Instagram has no quick replies and no templates: not asked.
            return _not_asked(public, f"not asked on {contact.conversation.channel}")
        target = customer_target(contact)
        if not target.to:
            return _not_asked(public, "the customer has no phone number")
        merchant = contact.merchant
        method: str | None = None
        if window_open(contact.conversation.last_inbound_at, utcnow()):
            try:
                template = await self._outreach.template(
                    Campaign.customer_satisfaction_quick_reply, contact.language, merchant
                )
                await self._sender.send(
                    notification_id=n,
                    key=keys.customer_key(n, DeliveryKind.csat),
                    kind=DeliveryKind.csat,
                    target=target,
                    template=render(template, [public]),
                )
                method = csat.METHOD_QUICK_REPLY
            except ConfigurationError as err:
                return _not_asked(public, err.message)
            except SendError as err:
                if not err.window_closed:
                    return _failed_or_raise(public, err)
                log.info("%s: csat quick-reply refused (window closed); the template", public)
        if method is None:
            try:
                template = await self._outreach.template(
                    Campaign.customer_satisfaction_request, contact.language, merchant
                )
                await self._outreach.send_customer_template(
                    n, DeliveryKind.csat, target, template, public
                )
            except ConfigurationError as err:
                return _not_asked(public, err.message)
            except SendError as err:
                return _failed_or_raise(public, err)
            method = csat.METHOD_TEMPLATE
        await csat.record_ask(
            self._db,
            notification_id=n,
            merchant_id=notification.merchant_id,
            conversation_id=notification.conversation_id,
            method=method,
            at=utcnow(),
        )
        return AskSatisfactionResult(asked=True, method=method)

    def all(self) -> list[Callable[..., Any]]:
        return [self.ask_satisfaction]


def _not_asked(public: str, reason: str) -> AskSatisfactionResult:
    log.warning("%s: the customer was not asked to rate the answer: %s", public, reason)
    return AskSatisfactionResult(asked=False, reason=reason)


def _failed_or_raise(public: str, err: SendError) -> AskSatisfactionResult:
    if err.retryable or err.ambiguous:
        raise retry_later(err)
    return _not_asked(public, f"{err.code}: {err.message}")
