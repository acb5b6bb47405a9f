"""The offline provider: deterministic classification, cleaning and answer extraction."""

from __future__ import annotations

import pytest

from notifyflow.ai.base import ChatTurn, SupportCategory
from notifyflow.ai.offline import FRAGMENT_LIMIT, OfflineProvider, as_fragment, as_sentence
from notifyflow.models.notification import (
    UserQuestionAnswerSchema,
    UserSupportRequestAnswerSchema,
)

CATEGORIES = [
    SupportCategory("returns", "Handles returns, refunds and exchanges of delivered orders."),
    SupportCategory("technical", "Handles website errors, login problems and app crashes."),
    SupportCategory("sales", "Handles quotes, bulk orders and discounts for companies."),
]


@pytest.fixture
def ai() -> OfflineProvider:
    return OfflineProvider()


@pytest.mark.parametrize(
    ("reason", "user_type", "readable"),
    [
        ("I want a refund for my delivered order, the size was wrong", "returns", "Returns"),
        ("The website shows an error when I try to login", "technical", "Technical"),
        ("Can I get a discount on a bulk order for my company?", "sales", "Sales"),
        ("REFUNDS!!! please", "returns", "Returns"),
    ],
)
async def test_classify_picks_best_overlap(
    ai: OfflineProvider, reason: str, user_type: str, readable: str
) -> None:
    result = await ai.classify_support(reason, CATEGORIES)
    assert (result.user_type, result.readable_type) == (user_type, readable)


@pytest.mark.parametrize(
    "reason",
    [
        "What is the meaning of life?",  # nothing in common
        "",  # empty
        "the and of to",  # stopwords only
    ],
)
async def test_classify_falls_back_to_admin(ai: OfflineProvider, reason: str) -> None:
    result = await ai.classify_support(reason, CATEGORIES)
    assert (result.user_type, result.readable_type) == ("admin", "General")


async def test_classify_tie_goes_to_admin(ai: OfflineProvider) -> None:
    result = await ai.classify_support("refund crashes", CATEGORIES)
    assert result.user_type == "admin"


async def test_classify_without_categories(ai: OfflineProvider) -> None:
    result = await ai.classify_support("refund please", [])
    assert result.user_type == "admin"


async def test_classify_is_deterministic(ai: OfflineProvider) -> None:
    first = await ai.classify_support("my app crashes at login", CATEGORIES)
    for _ in range(5):
        assert await ai.classify_support("my app crashes at login", CATEGORIES) == first


async def test_localize_cleans_text(ai: OfflineProvider) -> None:
    result = await ai.localize("  We open\n\tat 9am     on Mondays  ", "es")
    assert result.full_sentence == "We open at 9am on Mondays."
    assert result.continuation_fragment == "we open at 9am on Mondays"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Yes, we ship to Lisbon.", "yes, we ship to Lisbon."),
        ("DHL picks up daily.", "DHL picks up daily."),
        ("iPhone cases are back.", "iPhone cases are back."),
        ("I will check tomorrow.", "I will check tomorrow."),
        ("Lisbon is covered; Lisbon stores too.", "Lisbon is covered; Lisbon stores too."),
    ],
)
def test_fragment_keeps_names_and_acronyms(text: str, fragment: str) -> None:
    assert as_fragment(text) == fragment


def test_sentence_keeps_final_punctuation() -> None:
    assert as_sentence("Really?") == "Really?"
    assert as_sentence("Done!") == "Done!"
    assert as_sentence("ok") == "ok."


def test_fragment_is_template_safe_and_bounded() -> None:
    long = ("word " * 400) + "\n\n" + ("x" * 50)
    fragment = as_fragment(long)
    assert len(fragment) <= FRAGMENT_LIMIT
    assert fragment.endswith("…")
    assert "\n" not in fragment and "\t" not in fragment and "  " not in fragment
    assert not fragment[:-1].endswith(" ")


def test_fragment_cuts_an_unbroken_word() -> None:
    fragment = as_fragment("a" * 2000)
    assert len(fragment) == FRAGMENT_LIMIT and fragment.endswith("…")


async def test_compose_reply_is_the_sentence(ai: OfflineProvider) -> None:
    history = [ChatTurn("user", "When do you open?"), ChatTurn("assistant", "Let me ask.")]
    assert await ai.compose_reply(history, "at 9am\non Mondays", "pt") == "at 9am on Mondays."


async def test_answer_from_reply_single_required_string(ai: OfflineProvider) -> None:
    schema = UserQuestionAnswerSchema.model_json_schema()
    assert await ai.answer_from_reply("  We open at 9.\n", schema, "hours?") == {
        "answer": "We open at 9."
    }
    assert await ai.answer_from_reply("   ", schema, "hours?") is None


async def test_answer_from_reply_support_schema(ai: OfflineProvider) -> None:
    # One required string (agent_response_to_customer); resolution_notes is optional.
    schema = UserSupportRequestAnswerSchema.model_json_schema()
    assert await ai.answer_from_reply("Refund issued", schema, "refund?") == {
        "agent_response_to_customer": "Refund issued"
    }


async def test_answer_from_reply_other_schemas(ai: OfflineProvider) -> None:
    two = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "required": ["a", "b"],
    }
    number = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert await ai.answer_from_reply("x", two, "?") is None
    assert await ai.answer_from_reply("3", number, "?") is None
    assert await ai.answer_from_reply("x", {}, "?") is None
