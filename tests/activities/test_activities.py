"""Each activity through ``temporalio.testing.ActivityEnvironment``, with a fake outreach
service: what the activity records in the database and what it asks outreach to send, without
a worker, a workflow or a channel. The whole-stack tests (tests/workflows, tests/inbound) cover
the same paths end to end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from notifyflow.activities.admin_reply import AdminReplyActivities
from notifyflow.activities.fallback import FallbackActivities
from notifyflow.activities.notification import NotificationActivities
from notifyflow.ai.base import Localized
from notifyflow.ai.offline import OfflineProvider
from notifyflow.db.session import SessionFactory
from notifyflow.db.statements import execute
from notifyflow.db.tables import (
    Merchant,
    MerchantUser,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.db.types import utcnow
from notifyflow.intake import record_request
from notifyflow.models.ids import format_notification_id
from notifyflow.models.inbound import (
    AdminReplyInput,
    AdminReplyMessage,
    FallbackAction,
    FallbackInput,
    ReplyOutcome,
)
from notifyflow.models.notification import Campaign, NotificationStatus, NotificationType
from notifyflow.models.vocabulary import ChannelName, DeliveryKind, RecipientKind, SendMethod
from notifyflow.models.workflow_io import (
    AnswerAccepted,
    AnswerSource,
    DeliverInput,
    FinishInput,
    FollowUpInput,
    FollowUpKind,
    OpenInput,
    RecordRejectionInput,
    RejectedAttempt,
)
from notifyflow.outreach.contacts import CustomerContact
from notifyflow.outreach.ledger import ClaimWith, Send, Sent, Target, built
from notifyflow.outreach.members import Member, member_conversations
from notifyflow.outreach.policy import Outcome
from notifyflow.outreach.service import Notice, Reached
from tests.fixtures.database import MadeMerchant, MerchantFactory

QUESTION = {"question": "Do you ship to Canada?"}


@dataclass
class FakeOutreach:
    """Records what the activities ask for; member conversations are the real ones (they are
    database rows the activities record recipients against)."""

    db: SessionFactory
    outcome: Outcome = Outcome(True, SendMethod.direct, "SM-fake", None)
    asked: list[tuple[int, DeliveryKind, list[int]]] = field(default_factory=list)
    notices: list[tuple[int, list[int], Notice, bool]] = field(default_factory=list)
    # Notices planned to go with the customer's message (closure).
    planned: list[tuple[int, list[int], Notice]] = field(default_factory=list)
    reached: list[tuple[int, DeliveryKind, Campaign, str]] = field(default_factory=list)

    async def members(
        self,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        known: Mapping[int, Member] | None = None,
    ) -> dict[int, Member]:
        return await member_conversations(
            self.db, merchant.id, merchant.default_language, list(users)
        )

    async def ask(
        self,
        notification: Notification,
        merchant: Merchant,
        members: dict[int, Member],
        kind: DeliveryKind,
        *,
        claim_with: Sequence[Any] = (),
    ) -> int:
        # The routing's writes ride with the real ledger's claim: written here instead.
        async with self.db() as session:
            for stmt in claim_with:
                await execute(session, stmt)
            await session.commit()
        self.asked.append((notification.id, kind, sorted(members)))
        return len(members)

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
        self.notices.append((notification_id, sorted(u.id for u in users), notice, best_effort))
        return len(users)

    async def notice_sends(
        self,
        notification_id: int,
        merchant: Merchant,
        users: Sequence[MerchantUser],
        notice: Notice,
        known: Mapping[int, Member] | None = None,
    ) -> list[Send]:
        self.planned.append((notification_id, sorted(u.id for u in users), notice))
        return [
            Send(
                f"{notification_id}:{notice.kind}:{u.id}",
                Target(0, ChannelName.whatsapp, u.phone, "", RecipientKind.merchant_user, u.id),
                text=notice.text,
                kind=notice.kind,
            )
            for u in users
        ]

    async def reach_customer(
        self,
        notification_id: int,
        kind: DeliveryKind,
        contact: CustomerContact,
        localized: Localized,
        campaign: Campaign,
        *,
        compose: Any = None,
        alongside: Sequence[Send] = (),
        claim_with: ClaimWith = (),
        outcome_with: Any = None,
        part: int | None = None,
        on_claimed: Any = None,
    ) -> Reached:
        # The answer's writes ride with the real ledger's claim: written here instead.
        async with self.db() as session:
            for stmt in built(claim_with):
                await execute(session, stmt)
            await session.commit()
        if on_claimed is not None:
            on_claimed()
        self.reached.append((notification_id, kind, campaign, localized.full_sentence))
        return Reached(
            self.outcome, [Sent(f"SM-{s.key}", SendMethod.direct, False) for s in alongside]
        )


@dataclass
class FakeReplies:
    sent: list[tuple[int | None, int, str, str]] = field(default_factory=list)

    async def reply(
        self,
        notification_id: int | None,
        user: MerchantUser,
        merchant: Merchant,
        conversation_id: int,
        text: str,
        in_reply_to: str,
    ) -> None:
        self.sent.append((notification_id, user.id, text, in_reply_to))


@dataclass
class FakeSubmit:
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(
        self,
        client: Any,
        db: SessionFactory,
        notification_id: str,
        *,
        answered_by: int,
        answer: dict[str, Any] | str,
        source: AnswerSource,
    ) -> AnswerAccepted:
        self.calls.append(
            {"notification_id": notification_id, "answered_by": answered_by, "answer": answer}
        )
        return AnswerAccepted(notification_id=notification_id, status="answered", accepted=True)


async def _question(db: SessionFactory, shop: MadeMerchant) -> Notification:
    notification, _, _ = await record_request(
        db, NotificationType.user_question_request, dict(QUESTION), shop.conversation_id, None
    )
    return notification


def _lifecycle(db: SessionFactory, outreach: FakeOutreach) -> NotificationActivities:
    return NotificationActivities(db, OfflineProvider(), outreach)  # type: ignore[arg-type]


async def _recorded_recipients(db: SessionFactory, notification_id: int) -> list[int]:
    """Who the database says was asked about the notification."""
    async with db() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationRecipient.merchant_user_id).where(
                        NotificationRecipient.notification_id == notification_id
                    )
                )
            ).all()
        )


async def test_open_asks_the_admins_and_records_them(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=2, user_types=["sales"])
    notification = await _question(db, shop)
    outreach = FakeOutreach(db)
    result = await ActivityEnvironment().run(
        _lifecycle(db, outreach).open_notification, OpenInput(notification_id=notification.id)
    )
    assert sorted(result.recipients) == sorted(shop.admin_ids)
    assert sorted(result.allowed_answerers) == sorted(shop.admin_ids)
    assert outreach.asked == [(notification.id, DeliveryKind.request, sorted(shop.admin_ids))]
    recorded = await _recorded_recipients(db, notification.id)
    assert sorted(recorded) == sorted(shop.admin_ids)


async def test_a_retried_escalation_keeps_the_recipients_it_recorded(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    """An escalation whose sends failed after its recipients were recorded is retried with the
    same input: the retry asks them again (the ledger skips what went through) instead of
    failing on the recipients it already wrote, until the activity gives up."""
    shop = await make_merchant(admins=3)
    notification = await _question(db, shop)
    outreach = FakeOutreach(db)
    first_admin, *others = shop.admin_ids
    escalate = FollowUpInput(
        notification_id=notification.id, kind=FollowUpKind.escalation, recipients=[first_admin]
    )
    for _ in range(2):
        result = await ActivityEnvironment().run(_lifecycle(db, outreach).follow_up, escalate)
        assert sorted(result.recipients) == sorted(shop.admin_ids) and result.sent == 2
    assert [(kind, users) for _, kind, users in outreach.asked] == [
        (DeliveryKind.escalation, sorted(others))
    ] * 2
    recorded = await _recorded_recipients(db, notification.id)
    assert sorted(recorded) == sorted(others)


async def test_a_reminder_is_one_notice_to_the_current_recipients(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=2)
    notification = await _question(db, shop)
    outreach = FakeOutreach(db)
    public = format_notification_id(notification.id)
    result = await ActivityEnvironment().run(
        _lifecycle(db, outreach).follow_up,
        FollowUpInput(
            notification_id=notification.id,
            kind=FollowUpKind.reminder,
            recipients=[shop.admin_ids[0]],
        ),
    )
    assert result.sent == 1
    [(_, users, notice, best_effort)] = outreach.notices
    assert users == [shop.admin_ids[0]] and not best_effort
    assert notice.kind is DeliveryKind.reminder
    assert notice.campaign is Campaign.notification_reminder
    assert notice.values == [public, QUESTION["question"]]


async def test_deliver_records_the_answer_and_tells_the_other_admins(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=2)
    notification = await _question(db, shop)
    outreach = FakeOutreach(db)
    answerer, other = shop.admin_ids
    result = await ActivityEnvironment().run(
        _lifecycle(db, outreach).deliver_answer,
        DeliverInput(
            notification_id=notification.id,
            answer={"answer": "Yes, to every province."},
            answered_by=answerer,
            answered_at=utcnow(),
            source=AnswerSource.api,
            recipients=shop.admin_ids,
            customer_field="answer",
        ),
    )
    assert result.status is NotificationStatus.delivered
    assert result.method == SendMethod.direct and result.closure_notices == 1
    [(_, kind, campaign, _)] = outreach.reached
    assert kind is DeliveryKind.answer and campaign is Campaign.merchant_user_question_answer
    [(_, users, notice)] = outreach.planned
    assert users == [other] and notice.kind is DeliveryKind.closure
    assert outreach.notices == []
    async with db() as session:
        row = await session.get(Notification, notification.id)
    assert row is not None and row.status == "delivered" and row.answered_by == answerer


async def test_a_failed_delivery_tells_the_answerer(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=1)
    notification = await _question(db, shop)
    outreach = FakeOutreach(db, outcome=Outcome(False, SendMethod.campaign, None, "63005: no"))
    result = await ActivityEnvironment().run(
        _lifecycle(db, outreach).deliver_answer,
        DeliverInput(
            notification_id=notification.id,
            answer={"answer": "Yes."},
            answered_by=shop.admin_ids[0],
            answered_at=utcnow(),
            source=AnswerSource.api,
            recipients=shop.admin_ids,
            customer_field="answer",
        ),
    )
    assert result.status is NotificationStatus.delivery_failed and result.reason == "63005: no"
    assert [(users, notice.kind) for _, users, notice in outreach.planned] == [
        ([], DeliveryKind.closure)
    ]
    kinds = [(users, notice.kind) for _, users, notice, _ in outreach.notices]
    assert kinds == [(shop.admin_ids, DeliveryKind.delivery_failed)]


async def test_expiry_tells_recipients_and_customer(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=2)
    notification = await _question(db, shop)
    outreach = FakeOutreach(db)
    await ActivityEnvironment().run(
        _lifecycle(db, outreach).finish_notification,
        FinishInput(
            notification_id=notification.id,
            status=NotificationStatus.expired,
            reason="no answer in time",
            recipients=shop.admin_ids,
            tell_customer=True,
        ),
    )
    [(_, users, notice, _)] = outreach.notices
    assert users == sorted(shop.admin_ids) and notice.kind is DeliveryKind.expired
    [(_, kind, campaign, _)] = outreach.reached
    assert kind is DeliveryKind.expiry and campaign is Campaign.customer_request_expired
    async with db() as session:
        row = await session.get(Notification, notification.id)
    assert row is not None and row.status == "expired"


async def test_a_refused_answer_is_recorded_once(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=1)
    notification = await _question(db, shop)
    attempt = RejectedAttempt(
        answered_by=2_147_483_000,
        source=AnswerSource.ui,
        code="not_allowed",
        message="may not answer",
        at=utcnow(),
    )
    record = _lifecycle(db, FakeOutreach(db)).record_rejection
    payload = RecordRejectionInput(
        notification_id=notification.id, attempt=attempt, answer_json='{"answer": "x"}'
    )
    for _ in range(2):
        await ActivityEnvironment().run(record, payload)
    async with db() as session:
        rows = (
            await session.scalars(
                select(NotificationAnswer).where(
                    NotificationAnswer.notification_id == notification.id
                )
            )
        ).all()
    assert len(rows) == 1 and rows[0].answered_by is None
    assert rows[0].reason == "may not answer (claimed by unknown user 2147483000)"


async def test_a_failure_after_delivery_tells_the_answerer(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=1)
    notification = await _question(db, shop)
    async with db() as session:
        await session.execute(
            update(Notification)
            .where(Notification.id == notification.id)
            .values(status="delivered", answered_by=shop.admin_ids[0], delivery_method="direct")
        )
        await session.commit()
    outreach = FakeOutreach(db)
    result = await ActivityEnvironment().run(
        FallbackActivities(db, outreach).record_delivery_failure,  # type: ignore[arg-type]
        FallbackInput(
            notification_id=notification.id,
            action=FallbackAction.fail,
            provider_message_id="SM1",
            error_code="63005",
            reason="WhatsApp refused the message",
        ),
    )
    assert result.status == "delivery_failed" and result.reason == "WhatsApp refused the message"
    [(_, users, notice, best_effort)] = outreach.notices
    assert users == shop.admin_ids and not best_effort
    assert notice.kind is DeliveryKind.delivery_failed


async def test_an_admin_reply_is_submitted_without_its_id(
    db: SessionFactory, make_merchant: MerchantFactory, skip_env: WorkflowEnvironment
) -> None:
    shop = await make_merchant(admins=1)
    notification = await _question(db, shop)
    public = format_notification_id(notification.id)
    submit = FakeSubmit()
    activities = AdminReplyActivities(db, OfflineProvider(), FakeReplies(), submit)  # type: ignore[arg-type]
    # The activity hands its client to the submission (the fake ignores it).
    decision = await ActivityEnvironment(client=skip_env.client).run(
        activities.answer_admin_reply,
        AdminReplyInput(
            message_sid="SM" + "a" * 32,
            merchant_id=shop.merchant_id,
            merchant_user_id=shop.admin_ids[0],
            conversation_id=shop.conversation_id,
            text=f"{public}: Yes, we ship to Canada.",
        ),
    )
    assert decision.outcome is ReplyOutcome.accepted and decision.notification_id == notification.id
    assert submit.calls == [
        {
            "notification_id": public,
            "answered_by": shop.admin_ids[0],
            "answer": {"answer": "Yes, we ship to Canada."},
        }
    ]


async def test_the_reply_goes_through_the_replies(
    db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant(admins=1)
    replies = FakeReplies()
    activities = AdminReplyActivities(db, OfflineProvider(), replies, FakeSubmit())  # type: ignore[arg-type]
    await ActivityEnvironment().run(
        activities.reply_to_admin,
        AdminReplyMessage(
            message_sid="SM1",
            merchant_id=shop.merchant_id,
            merchant_user_id=shop.admin_ids[0],
            conversation_id=shop.conversation_id,
            notification_id=None,
            text="Which notification is this about?",
        ),
    )
    assert replies.sent == [(None, shop.admin_ids[0], "Which notification is this about?", "SM1")]
