"""The CSAT ask's Content definitions respect Twilio's quick-reply limits (at most three buttons
in an unapproved session message, ten in an approved template, titles of 20 characters), and
what a tap sends back is read as the rating it stands for."""

from __future__ import annotations

import re

import pytest

from notifyflow import csat
from notifyflow.db.seed import (
    DEFAULT_TEMPLATES,
    MAX_BUTTON_TITLE,
    MAX_SESSION_BUTTONS,
    MAX_TEMPLATE_BUTTONS,
    content_definition,
)
from notifyflow.models.notification import Campaign

QUICK = Campaign.customer_satisfaction_quick_reply
TEMPLATE = Campaign.customer_satisfaction_request


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_asks_are_quick_replies_within_twilios_limits(language: str) -> None:
    session = content_definition(DEFAULT_TEMPLATES[(QUICK, language)])["types"]
    approved = content_definition(DEFAULT_TEMPLATES[(TEMPLATE, language)])["types"]
    in_window = session["twilio/quick-reply"]["actions"]
    outside = approved["twilio/quick-reply"]["actions"]
    assert len(in_window) <= MAX_SESSION_BUTTONS
    assert len(outside) <= MAX_TEMPLATE_BUTTONS
    # Outside the window every score has its button; inside, the body says "1 to 5".
    assert sorted(int(a["id"].rsplit(":", 1)[1]) for a in outside) == [1, 2, 3, 4, 5]
    assert (
        "1" in session["twilio/quick-reply"]["body"]
        and "5" in session["twilio/quick-reply"]["body"]
    )
    for action in in_window + outside:
        assert len(action["title"]) <= MAX_BUTTON_TITLE
        tapped = action["id"].replace("{{1}}", "NOTIF_12")
        assert csat.parse_payload(tapped) == (12, int(tapped.rsplit(":", 1)[1]))


def test_every_other_default_is_plain_text() -> None:
    for (campaign, _), template in DEFAULT_TEMPLATES.items():
        types = content_definition(template)["types"]
        expected = "twilio/quick-reply" if campaign in (QUICK, TEMPLATE) else "twilio/text"
        assert list(types) == [expected]
        body = types[expected]["body"]
        # WhatsApp rejects a template whose body begins or ends with a variable.
        assert not re.match(r"^\s*\{\{", body) and not re.search(r"\}\}\s*$", body)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("csat:NOTIF_7:5", (7, 5)),
        ("csat:NOTIF_7:0", None),
        ("csat:NOTIF_7:6", None),
        ("csat:7:5", None),
        ("other:NOTIF_7:5", None),
        (None, None),
    ],
)
def test_button_payloads(payload: str | None, expected: tuple[int, int] | None) -> None:
    assert csat.parse_payload(payload) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [("5", 5), (" 1 \n", 1), ("0", None), ("6", None), ("55", None), ("5 stars", None), ("", None)],
)
def test_a_bare_digit(body: str, expected: int | None) -> None:
    assert csat.bare_digit(body) == expected
    assert csat.may_be_rating(None, body) is (expected is not None)
