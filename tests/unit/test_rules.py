"""The pure rules, each in its one home: the 24-hour and Instagram windows, the plainer template
variable, send-error properties, refusals by state, id parsing, headlines and notice texts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError

from notifyflow.activities.notification import delivery_failed_notice, end_notice
from notifyflow.channels.base import SendError, closes_window
from notifyflow.db.types import utcnow
from notifyflow.models.errors import NotificationError, RefusalCode, parse_id, refusal_for
from notifyflow.models.notification import NotificationStatus, headline
from notifyflow.models.vocabulary import DeliveryKind
from notifyflow.outreach.errors import retry_later
from notifyflow.outreach.policy import (
    SHORTENED_LIMIT,
    instagram_decision,
    shortened_variable,
    window_open,
)


def test_the_24_hour_window() -> None:
    now = utcnow()
    assert window_open(now - timedelta(hours=24), now)
    assert not window_open(now - timedelta(hours=24, seconds=1), now)
    assert not window_open(None, now)


def test_instagram_allows_a_tagged_human_answer_up_to_7_days() -> None:
    now = utcnow()
    inside = instagram_decision(now - timedelta(hours=1), now, DeliveryKind.expiry)
    assert inside.allowed and not inside.human_agent
    tagged = instagram_decision(now - timedelta(days=3), now, DeliveryKind.answer)
    assert tagged.allowed and tagged.human_agent
    notice = instagram_decision(now - timedelta(days=3), now, DeliveryKind.expiry)
    assert not notice.allowed and notice.reason == "the Instagram 24-hour window is closed"
    late = instagram_decision(now - timedelta(days=8), now, DeliveryKind.answer)
    assert not late.allowed and "7 days" in (late.reason or "")


def test_the_shortened_variable_is_plain_and_bounded() -> None:
    assert shortened_variable("a\tb\n\n c") == "a b c"
    assert shortened_variable(" \n ") == "-"
    long = shortened_variable("word " * 200)
    assert len(long) <= SHORTENED_LIMIT and long.endswith("…") and "  " not in long


def test_send_error_properties() -> None:
    assert closes_window("63016") and closes_window("131047") and not closes_window(None)
    assert SendError("63013", "whitespace").variable_refused
    assert SendError("63021", "too long").variable_refused
    assert not SendError("63005", "refused").variable_refused


def test_retry_after_sets_the_next_delay() -> None:
    plain = SendError("20429", "slow down", retryable=True)
    assert retry_later(plain) is plain
    timed = retry_later(SendError("20429", "slow down", retryable=True, extra={"retry_after": "7"}))
    assert isinstance(timed, ApplicationError)
    assert timed.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize(
    ("status", "multiple", "closing", "code"),
    [
        (NotificationStatus.requested, False, False, None),
        (NotificationStatus.answered, False, False, RefusalCode.already_answered),
        (NotificationStatus.delivered, True, False, None),
        (NotificationStatus.delivered, True, True, RefusalCode.already_answered),
        (NotificationStatus.expired, True, False, RefusalCode.closed),
        (NotificationStatus.closed, False, True, RefusalCode.closed),
    ],
)
def test_refusal_by_state(
    status: NotificationStatus, multiple: bool, closing: bool, code: RefusalCode | None
) -> None:
    refusal = refusal_for("NOTIF_3", status, allow_multiple_answers=multiple, closing=closing)
    assert (refusal.code if refusal else None) == code
    if refusal is not None:
        verb = "closed" if closing else "answered"
        assert refusal.message == f"NOTIF_3 is {status.value} and cannot be {verb}"


def test_ids_are_parsed_once() -> None:
    assert parse_id(" NOTIF_12 ") == 12
    with pytest.raises(NotificationError) as caught:
        parse_id("NOTIF_012", location="path")
    assert caught.value.code is RefusalCode.malformed_id
    assert caught.value.details[0]["in"] == "path"
    with pytest.raises(NotificationError):
        parse_id("NOTIF_2147483648")


def test_headline_and_notices() -> None:
    assert headline("user_question_request", {"question": "Open on Sunday?"}) == "Open on Sunday?"
    assert headline("user_support_request", {"support_request_reason": "Refund"}) == "Refund"
    assert (
        delivery_failed_notice("NOTIF_4", "63005: no")
        == "Your answer to NOTIF_4 could not be delivered to the customer: 63005: no"
    )
    assert (
        end_notice("NOTIF_4", NotificationStatus.expired, None)
        == "Notification NOTIF_4 expired without an answer and is now closed."
    )
    assert (
        end_notice("NOTIF_4", NotificationStatus.closed, "duplicate")
        == "Notification NOTIF_4 was closed by an operator: duplicate"
    )
