"""The ledger's claim on a retry (outreach/ledger.py): the claim of the new sends, with the
step's own writes, is committed (and ``on_claimed`` told) before the rows an earlier attempt
claimed are decided, and a failure while deciding those leaves them as they were."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from notifyflow.channels.base import SendError
from notifyflow.db.session import SessionFactory
from notifyflow.db.statements import bind_update
from notifyflow.db.tables import Delivery, Notification
from notifyflow.intake import record_request
from notifyflow.models.notification import NotificationType
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, RecipientKind
from notifyflow.outreach.ledger import Send, Sender, Target
from tests.fixtures.lifecycle import RecordingChannel


class _LookupDown(RecordingChannel):
    """The first send to each number is ambiguous (the provider may have it); asking the
    provider afterwards fails."""

    def __init__(self) -> None:
        super().__init__()
        self.ambiguous: set[str] = set()

    async def send_text(self, message: Any) -> Any:
        if message.to not in self.ambiguous:
            self.ambiguous.add(message.to)
            raise SendError("ambiguous", "timed out", ambiguous=True)
        return await super().send_text(message)

    async def find_accepted(
        self, to: str, sender: str, since: datetime, body_or_content_sid: str
    ) -> str | None:
        raise RuntimeError("the provider's message list is down")


async def test_a_retry_commits_its_claim_before_deciding_earlier_rows(
    db: SessionFactory, make_merchant
) -> None:
    shop = await make_merchant()
    notification, _, _ = await record_request(
        db, NotificationType.user_question_request, {"question": "?"}, shop.conversation_id, None
    )
    channel = _LookupDown()
    sender = Sender(db, channel)

    def send(key: str, phone: str) -> Send:
        target = Target(
            conversation_id=shop.conversation_id,
            channel=ChannelName.whatsapp,
            to=phone,
            sender="whatsapp:+15550000000",
            recipient_kind=RecipientKind.merchant_user,
        )
        return Send(key=f"{notification.id}:test:{key}", target=target, text=f"hello {key}")

    first = await sender.send_many(
        notification_id=notification.id, kind=DeliveryKind.request, sends=[send("a", "+1555000001")]
    )
    assert isinstance(first[0], SendError) and first[0].ambiguous

    claimed: list[bool] = []
    step = bind_update(
        Notification,
        where="id",
        key=notification.id,
        values={"close_reason": "written with the claim"},
        name="test",
    )
    with pytest.raises(RuntimeError, match="message list is down"):
        await sender.send_many(
            notification_id=notification.id,
            kind=DeliveryKind.request,
            sends=[send("a", "+1555000001"), send("b", "+1555000002")],
            claim_with=[step],
            on_claimed=lambda: claimed.append(True),
        )
    # The step's writes and the new send's claim are committed, and said so once.
    assert claimed == [True]
    async with db() as session:
        rows = {
            d.idempotency_key.rsplit(":", 1)[1]: d
            for d in await session.scalars(
                select(Delivery).where(Delivery.notification_id == notification.id)
            )
        }
        reason = await session.scalar(
            select(Notification.close_reason).where(Notification.id == notification.id)
        )
    assert reason == "written with the claim"
    assert set(rows) == {"a", "b"}
    assert (rows["b"].status, rows["b"].attempts) == ("pending", 1)
    # The earlier row the failed lookup was deciding is as the first attempt left it.
    assert (rows["a"].status, rows["a"].attempts, rows["a"].error_code) == (
        "pending",
        1,
        "ambiguous",
    )
    # Nothing was sent on the failed retry.
    assert channel.sent == []
