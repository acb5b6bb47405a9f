"""What of a timeline is final (read_model.read_timeline): a send is recorded ``pending`` when
the ledger claims it and gets its outcome once the provider answered. The live event stream
sends each entry once, so it needs to know which entries can still change."""

from __future__ import annotations

import asyncio
from typing import Any

from notifyflow.db.session import SessionFactory
from notifyflow.intake import record_request
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationType
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, RecipientKind
from notifyflow.outreach.ledger import Send, Sender, Target
from notifyflow.read_model import read_timeline
from tests.fixtures.lifecycle import RecordingChannel


class _Held(RecordingChannel):
    """The provider has the message but has not answered yet."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.answer = asyncio.Event()

    async def send_text(self, message: Any) -> Any:
        self.sending.set()
        await self.answer.wait()
        return await super().send_text(message)


async def test_a_send_between_its_claim_and_its_outcome_is_not_final(
    db: SessionFactory, make_merchant
) -> None:
    shop = await make_merchant()
    notification, _, _ = await record_request(
        db, NotificationType.user_question_request, {"question": "?"}, shop.conversation_id, None
    )
    public = format_notification_id(notification.id)
    channel = _Held()
    target = Target(
        conversation_id=shop.conversation_id,
        channel=ChannelName.whatsapp,
        to="+15550000001",
        sender="whatsapp:+15550000000",
        recipient_kind=RecipientKind.merchant_user,
    )
    send = Send(key=f"{notification.id}:test:a", target=target, text="hello")
    sending = asyncio.create_task(
        Sender(db, channel).send_many(
            notification_id=notification.id, kind=DeliveryKind.request, sends=[send]
        )
    )
    await asyncio.wait_for(channel.sending.wait(), 10)
    held = await read_timeline(db, public)
    assert [e.event for e in held.entries] == ["requested", "sent request"]
    assert held.entries[1].detail.endswith(": pending")
    assert held.recorded == 1  # "requested" is final; the send is not

    channel.answer.set()
    await asyncio.wait_for(sending, 10)
    done = await read_timeline(db, public)
    assert done.entries[1].detail.endswith(": sent")
    assert done.recorded == 2
