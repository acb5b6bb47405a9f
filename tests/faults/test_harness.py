"""The fault harness judges by what people received, and counts a trial only once all of it ran.

Each case here is one the harness before issue 19 got wrong: it called a notification lost only
when the workflow or database status was wrong (so a delivered notification whose customer got
nothing counted as survived), grouped the fake's messages through the product's own Delivery
rows, counted a trial as survived before the checks after ``judge`` ran, and tallied any harness
error as a loss. No server is needed: the ledger verdict is a function of the fake's messages.
"""

from __future__ import annotations

from typing import Any

import pytest

from notifyflow.db.seed import default_content_sid
from notifyflow.models.notification import Campaign, closure_notice
from tests.faults.harness import Scenario, Tally, Verdict, scenario
from tests.fixtures.ledger import Expectation, HarnessError, ledger_verdict

CUSTOMER, ADMIN_1, ADMIN_2 = "+19990000001", "+19990000002", "+19990000003"
PUBLIC = "NOTIF_41"
REQUEST_SID = default_content_sid(Campaign.merchant_user_question_request, "en")
CLOSED_SID = default_content_sid(Campaign.notification_closed, "en")
CAMPAIGNS = {
    REQUEST_SID: Campaign.merchant_user_question_request.value,
    CLOSED_SID: Campaign.notification_closed.value,
}


def campaign_of(sid: str | None) -> str | None:
    return CAMPAIGNS.get(sid or "")


def message(to: str, body: str, sid: str | None = None, **variables: str) -> dict[str, Any]:
    return {
        "sid": f"SM{abs(hash((to, body))):032d}"[:34],
        "to": f"whatsapp:{to}",
        "body": body,
        "kind": "template" if sid else "text",
        "content_sid": sid,
        "variables": variables,
    }


def request(to: str) -> dict[str, Any]:
    return message(to, f"Reference: {PUBLIC}\nQuestion: Open on Sunday?", REQUEST_SID)


def closure(to: str) -> dict[str, Any]:
    return message(to, f"Update:\n\n{closure_notice(PUBLIC)}\n\nNo action.", CLOSED_SID)


def expectation(status: str = "delivered") -> Expectation:
    return Expectation(
        public=PUBLIC,
        status=status,
        customer=CUSTOMER,
        staff={ADMIN_1, ADMIN_2},
        asked={ADMIN_1, ADMIN_2},
        answerer=ADMIN_1,
    )


def test_a_delivered_notification_whose_customer_got_nothing_is_lost() -> None:
    """The old verdict saw workflow and database both say delivered, and called it survived."""
    verdict = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), closure(ADMIN_2)], [expectation()], campaign_of
    )
    assert (verdict.lost, verdict.duplicates) == (1, 0)
    assert "the customer got 0 messages, owed 1" in verdict.problems[0]


def test_a_second_customer_message_is_a_duplicate_whatever_the_product_recorded() -> None:
    """Counted from the fake's messages, not through the product's Delivery rows."""
    answer = message(CUSTOMER, "We open at 10.")
    reworded = message(CUSTOMER, "We open at ten on Sundays.")
    verdict = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), closure(ADMIN_2), answer, reworded],
        [expectation()],
        campaign_of,
    )
    assert (verdict.lost, verdict.duplicates) == (0, 1)


def test_every_other_admin_is_owed_one_closure_notice() -> None:
    answer = message(CUSTOMER, "We open at 10.")
    missing = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), answer], [expectation()], campaign_of
    )
    assert missing.lost == 1
    assert missing.problems == [f"{PUBLIC}: no closure message reached {ADMIN_2}"]
    twice = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), answer, closure(ADMIN_2), closure(ADMIN_2)],
        [expectation()],
        campaign_of,
    )
    assert (twice.lost, twice.duplicates) == (0, 1)
    clean = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), answer, closure(ADMIN_2)], [expectation()], campaign_of
    )
    assert (clean.lost, clean.duplicates, clean.problems) == (0, 0, [])


def test_a_closed_notification_owes_the_customer_nothing() -> None:
    verdict = ledger_verdict(
        [request(ADMIN_1), request(ADMIN_2), message(CUSTOMER, "Sorry!")],
        [expectation("closed")],
        campaign_of,
    )
    assert verdict.lost == 0 and verdict.problems


def test_an_unrecognised_message_to_an_admin_is_a_problem() -> None:
    verdict = ledger_verdict(
        [
            request(ADMIN_1),
            request(ADMIN_2),
            closure(ADMIN_2),
            message(CUSTOMER, "ok"),
            message(ADMIN_1, "hello there"),
        ],
        [expectation()],
        campaign_of,
    )
    assert verdict.problems and "unrecognised message" in verdict.problems[0]


def test_two_notifications_on_one_customer_cannot_be_judged() -> None:
    other = Expectation(
        public="NOTIF_42",
        status="delivered",
        customer=CUSTOMER,
        staff=set(),
        asked=set(),
    )
    with pytest.raises(HarnessError):
        ledger_verdict([], [expectation(), other], campaign_of)


async def test_a_trial_is_counted_after_every_check_ran() -> None:
    """The old tally added the trial to "survived" inside judge, before the checks after it."""
    tally = Tally()
    with pytest.raises(AssertionError):
        async with scenario("late check fails", tally) as case:
            case.verdict = Verdict()  # judged clean on the ledger
            raise AssertionError("a check after the verdict")
    assert (tally.injected, tally.survived, tally.lost, tally.failed, tally.errors) == (
        1,
        0,
        0,
        1,
        0,
    )
    async with scenario("all good", tally) as case:
        case.verdict = Verdict()
    assert (tally.injected, tally.survived) == (2, 1)


async def test_a_harness_error_is_an_error_not_a_loss() -> None:
    """The old tally counted any exception before the verdict as a lost notification."""
    tally = Tally()
    with pytest.raises(RuntimeError):
        async with scenario("broken set-up", tally):
            raise RuntimeError("the fake did not start")
    assert (tally.injected, tally.survived, tally.lost, tally.errors) == (1, 0, 0, 1)
    assert tally.line() == "faults injected 1, survived 0, lost 0, duplicates 0"


async def test_a_trial_without_a_verdict_fails() -> None:
    tally = Tally()
    with pytest.raises(HarnessError):
        async with scenario("forgot to judge", tally):
            pass
    assert (tally.survived, tally.errors) == (0, 1)


async def test_a_lossy_verdict_is_counted_when_the_trial_ends() -> None:
    tally = Tally()
    current: Scenario | None = None
    with pytest.raises(AssertionError):
        async with scenario("lost one", tally) as case:
            current = case
            case.verdict = Verdict(lost=1, problems=["the customer got 0 messages, owed 1"])
            case.verdict.check()
    assert current is not None
    assert (tally.survived, tally.lost, tally.failed, tally.errors) == (0, 1, 0, 0)
