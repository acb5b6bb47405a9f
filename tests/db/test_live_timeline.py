"""What of a timeline is final (read_model.read_timeline): a send is recorded ``pending`` when
the ledger claims it and gets its outcome once the provider answered. The live event stream
sends each entry once, so it needs to know which entries can still change."""

from __future__ import annotations

import asyncio
from typing import Any

from notifyflow.activities.answers import _accepted_answer
from notifyflow.db.answer_history import record_refused_answer
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import NotificationAnswer
from notifyflow.db.types import utcnow
from notifyflow.intake import record_request
from notifyflow.models.ids import format_notification_id
from notifyflow.models.notification import NotificationType
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, RecipientKind
from notifyflow.models.workflow_io import AnswerSource, DeliverInput
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
    assert [e.event for e in held.live] == ["requested", "sent request"]
    assert held.live[1].detail.endswith(": pending")
    assert held.pending == [False, True]

    channel.answer.set()
    await asyncio.wait_for(sending, 10)
    done = await read_timeline(db, public)
    assert done.live[1].detail.endswith(": sent")
    assert done.pending == [False, False]


async def test_an_answer_written_after_a_later_refusal_comes_after_it_live(
    db: SessionFactory, make_merchant
) -> None:
    """Admin 1's answer is taken by the workflow, then localized and written with its sends;
    admin 2 answers meanwhile and is refused at once. In time order the accepted answer comes
    first; a listener already had the refusal, so the stream sends the answer after it."""
    shop = await make_merchant(admins=2)
    notification, _, _ = await record_request(
        db, NotificationType.user_question_request, {"question": "?"}, shop.conversation_id, None
    )
    public = format_notification_id(notification.id)
    taken = utcnow()
    await record_refused_answer(
        db,
        notification_id=notification.id,
        answered_by=shop.admin_ids[1],
        source="api",
        text='{"answer": "No."}',
        code="already_answered",
        reason="another admin answered first",
        at=utcnow(),
    )
    answer = DeliverInput(
        notification_id=notification.id,
        answer={"answer": "Yes."},
        answered_by=shop.admin_ids[0],
        answered_at=taken,
        source=AnswerSource.api,
        recipients=shop.admin_ids,
        customer_field="answer",
    )
    async with db() as session:
        session.add(NotificationAnswer(**_accepted_answer(notification, answer)))
        await session.commit()
    timeline = await read_timeline(db, public)
    assert [e.event for e in timeline.entries] == ["requested", "answer accepted", "answer refused"]
    assert [e.event for e in timeline.live] == ["requested", "answer refused", "answer accepted"]
    assert not any(timeline.pending)
