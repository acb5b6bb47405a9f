"""The seam between the provider and the ledger: the database drops the worker's connections
while a message is at the provider. The record of what the provider accepted comes right after,
on a pooled connection the worker had used moments before — pinged however recent (the pool's
idle threshold is not trusted there), so it reconnects and records the send once: the retry
that a failed record would force has to find the message at the provider, and Instagram's API
cannot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select, text

from notifyflow.channels.base import SendResult
from notifyflow.db.migrate import upgrade
from notifyflow.db.session import SessionFactory, create_engine, session_factory
from notifyflow.db.tables import Delivery, Message
from notifyflow.intake import record_request
from notifyflow.models.notification import NotificationType
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, RecipientKind
from notifyflow.outreach.ledger import Send, Sender, Sent, Target
from tests.fixtures.database import MerchantFactory
from tests.fixtures.lifecycle import RecordingChannel


class _DatabaseDropsDuringSend(RecordingChannel):
    """Accepts the message; meanwhile the server terminates the sender's connections."""

    def __init__(self, db: SessionFactory, pids: set[int]) -> None:
        super().__init__()
        self._db = db
        self._pids = pids
        self.terminated: set[int] = set()

    async def send_text(self, message: Any) -> SendResult:
        result = await super().send_text(message)
        async with self._db() as session:
            for pid in sorted(self._pids):
                # Waits (up to 5 s) until the backend is gone.
                if (
                    await session.execute(
                        text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid}
                    )
                ).scalar_one():
                    self.terminated.add(pid)
        return result


async def test_a_connection_dropped_during_a_send_does_not_fail_its_record(
    database_url: str, scratch_database: Callable[[str], str]
) -> None:
    # A server to drop connections: the run's database when it is PostgreSQL, else a migrated
    # scratch PostgreSQL database (the fixture skips only on a machine without PostgreSQL).
    if not database_url.startswith("postgresql"):
        database_url = scratch_database("postgresql")
        upgrade(database_url)
    setup = create_engine(database_url)
    db = session_factory(setup)
    try:
        await _run(database_url, db)
    finally:
        await setup.dispose()


async def _run(database_url: str, db: SessionFactory) -> None:
    shop = await MerchantFactory(db)()
    notification, _, _ = await record_request(
        db, NotificationType.user_question_request, {"question": "?"}, shop.conversation_id, None
    )
    # The worker's engine, its idle threshold long: only the record's own ping can save it.
    engine = create_engine(database_url, pool_size=1, ping_after_idle=60)
    pids: set[int] = set()

    def connected(dbapi_connection: Any, _record: Any) -> None:
        pids.add(dbapi_connection.driver_connection.info.backend_pid)

    event.listen(engine.sync_engine, "connect", connected)
    channel = _DatabaseDropsDuringSend(db, pids)
    sender = Sender(session_factory(engine), channel)
    target = Target(
        conversation_id=shop.conversation_id,
        channel=ChannelName.whatsapp,
        to=shop.phones[shop.admin_ids[0]],
        sender="whatsapp:+15550000000",
        recipient_kind=RecipientKind.merchant_user,
        merchant_user_id=shop.admin_ids[0],
    )
    key = f"{notification.id}:test:dropped"
    try:
        (result,) = await sender.send_many(
            notification_id=notification.id,
            kind=DeliveryKind.request,
            sends=[Send(key=key, target=target, text="hello")],
        )
    finally:
        await engine.dispose()
    # The connection the claim used was terminated while the message was out.
    assert channel.terminated and channel.terminated <= pids
    assert isinstance(result, Sent) and not result.duplicate
    assert len(channel.sent) == 1
    async with db() as session:
        row = (await session.scalars(select(Delivery).where(Delivery.idempotency_key == key))).one()
        assert (row.status, row.provider_message_id) == ("sent", result.provider_message_id)
        history = (
            await session.scalars(
                select(Message).where(Message.conversation_id == shop.conversation_id)
            )
        ).all()
    assert [m.content for m in history] == ["hello"]
