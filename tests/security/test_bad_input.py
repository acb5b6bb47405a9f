"""Generated bad input through the HTTP API: always a 4xx with the error envelope, never a
5xx, never a state change. The tally at the end of the run counts every input tried."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from notifyflow.db.tables import Delivery, Document, Notification, NotificationAnswer
from tests.api.conftest import assert_envelope
from tests.fixtures.seeds import SEED
from tests.security.conftest import TALLY, LiveStack

EXAMPLES = 120
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the corpus is the seed's alone, not what an earlier run saved
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Unicode that trips naive code: emoji, RTL, CJK, zero-width, combining marks, NUL, surrogates.
NASTY = st.sampled_from(
    [
        "😀",
        "مرحبا",
        "שלום",
        "你好",
        "\u200b",
        "\u200f",
        "e\u0301",
        "\x00",
        "\ud800",
        "'; --",
        "{{1}}",
    ]
)
TEXT = st.one_of(st.text(max_size=40), NASTY, st.builds("".join, st.lists(NASTY, max_size=5)))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


async def _post(live: LiveStack, url: str, body: Any) -> Any:
    # Serialized here with ASCII escapes: a lone surrogate travels as \ud800, as a real client
    # would send it, instead of failing inside httpx's UTF-8 encoder.
    return await live.http.post(
        url, content=json.dumps(body), headers={"content-type": "application/json"}
    )


async def _counts(db: Any, merchant_id: int | None = None) -> tuple[int, ...]:
    """Rows of one merchant (other tests' workflows may still be writing theirs), or of the
    whole database for inputs that name no merchant."""
    async with db() as session:
        ids = select(Notification.id)
        docs = select(func.count(Document.id))
        if merchant_id is not None:
            ids = ids.where(Notification.merchant_id == merchant_id)
            docs = docs.where(Document.merchant_id == merchant_id)
        return (
            await session.scalar(select(func.count()).select_from(ids.subquery())) or 0,
            await session.scalar(
                select(func.count(NotificationAnswer.id)).where(
                    NotificationAnswer.notification_id.in_(ids)
                )
            )
            or 0,
            await session.scalar(
                select(func.count(Delivery.id)).where(Delivery.notification_id.in_(ids))
            )
            or 0,
            await session.scalar(docs) or 0,
        )


async def _open_question(live: LiveStack, conversation_id: int) -> str:
    r = await live.http.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": conversation_id,
            "context": {"question": "Is this safe?"},
        },
    )
    assert r.status_code == 202
    public = str(r.json()["notification_id"])
    # Settled once both admins' request campaigns are in the ledger.
    for _ in range(400):
        async with live.db() as session:
            sent = await session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.notification_id == int(public.removeprefix("NOTIF_")),
                    Delivery.status == "sent",
                )
            )
        if sent == 2:
            return public
        await asyncio.sleep(0.02)
    raise AssertionError("request campaigns never recorded")


async def test_generated_notification_ids(live: LiveStack, db) -> None:
    ids = st.one_of(
        TEXT,
        # Well-formed ids only where no notification can exist (beyond int32, or not yet
        # reached in any test run); malformed ones anywhere.
        st.integers(max_value=0).map(lambda n: f"NOTIF_{n}"),
        st.integers(min_value=2_000_000_000).map(lambda n: f"NOTIF_{n}"),
        st.integers(min_value=0, max_value=10**12).map(lambda n: f"NOTIF_0{n}"),
        st.text(alphabet="NOTIF_0123456789 -+x", max_size=30),
    )
    before = await _counts(db)
    seen: list[str] = []

    @seed(SEED)
    @SETTINGS
    @given(ids)
    def check(text: str) -> None:
        seen.append(text)

    check()
    for text in seen:
        path = quote(text.encode("utf-8", "surrogatepass"), safe="")
        for method, url, body in (
            ("GET", f"/v1/notifications/{path}", None),
            ("POST", f"/v1/notifications/{path}/answer", {"answered_by": 1, "answer": {"a": 1}}),
            ("POST", f"/v1/notifications/{path}/close", {}),
        ):
            r = await live.http.request(
                method,
                url,
                content=None if body is None else json.dumps(body),
                headers={"content-type": "application/json"},
            )
            TALLY.count("notification ids", r.status_code)
            assert 400 <= r.status_code < 500, (text, r.status_code, r.text)
            assert_envelope(r, r.status_code)
    assert await _counts(db) == before


async def test_generated_answers(live: LiveStack, db, shop_factory) -> None:
    shop = await shop_factory()
    public = await _open_question(live, shop.conversation_id)
    before = await _counts(db, shop.merchant_id)
    answers = st.one_of(
        JSON_VALUES.map(lambda v: {"answer_json": json.dumps(v) if not isinstance(v, str) else v}),
        st.dictionaries(TEXT, JSON_VALUES, max_size=4)
        .filter(lambda d: not isinstance(d.get("answer"), str) or not d["answer"].strip())
        .map(lambda d: {"answer": d}),
        TEXT.map(lambda t: {"answer_json": t}),
        JSON_VALUES.map(lambda v: {"answer": v}),
    )
    bodies: list[dict[str, Any]] = []

    @seed(SEED)
    @SETTINGS
    @given(answers, st.sampled_from([shop.admins[0].id, shop.admins[1].id]))
    def check(body: dict[str, Any], who: int) -> None:
        bodies.append({"answered_by": who, **body})

    check()
    refused = 0
    for body in bodies:
        r = await _post(live, f"/v1/notifications/{public}/answer", body)
        TALLY.count("answers", r.status_code)
        if r.status_code == 200:
            # A generated valid answer is legal; it must then be the only one ever accepted.
            raise AssertionError(f"a generated answer was accepted: {body}")
        assert 400 <= r.status_code < 500, (body, r.text)
        assert_envelope(r, r.status_code)
        refused += 1
    view = (await live.http.get(f"/v1/notifications/{public}")).json()
    assert view["status"] == "requested"
    # Refusals are recorded in the answer history; nothing else changed.
    after = await _counts(db, shop.merchant_id)
    assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    assert after[1] - before[1] <= refused
    await live.http.post(f"/v1/notifications/{public}/close", json={})


async def test_generated_request_contexts(live: LiveStack, db, shop_factory) -> None:
    shop = await shop_factory()
    before = await _counts(db, shop.merchant_id)
    bodies: list[dict[str, Any]] = []
    contexts = st.one_of(
        JSON_VALUES,
        st.dictionaries(TEXT, JSON_VALUES, max_size=5).filter(
            lambda d: not isinstance(d.get("question"), str) or not d["question"].strip()
        ),
        st.fixed_dictionaries({"question": NASTY.filter(lambda t: t in ("\x00", "\ud800"))}),
    )

    @seed(SEED)
    @SETTINGS
    @given(
        contexts,
        st.one_of(st.just("user_question_request"), TEXT),
        st.one_of(st.just(shop.conversation_id), st.integers(), TEXT),
    )
    def check(context: Any, kind: str, conversation: Any) -> None:
        bodies.append({"type": kind, "conversation_id": conversation, "context": context})

    check()
    for body in bodies:
        r = await _post(live, "/v1/notifications", body)
        TALLY.count("request contexts", r.status_code)
        assert 400 <= r.status_code < 500, (body, r.text)
        assert_envelope(r, r.status_code)
    assert await _counts(db, shop.merchant_id) == before


async def test_unicode_end_to_end(live: LiveStack, db, shop_factory) -> None:
    """Emoji, RTL, CJK and zero-width characters survive the whole trip unchanged."""
    shop = await shop_factory()
    question = "¿Hay envíos a 東京? 🚚 \u200bمرحبا"
    r = await live.http.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": shop.conversation_id,
            "context": {"question": question},
        },
    )
    assert r.status_code == 202
    public = r.json()["notification_id"]
    for _ in range(400):
        if live.channel.to(shop.admins[0].phone):
            break
        await asyncio.sleep(0.02)
    assert live.channel.to(shop.admins[0].phone)[0].variables == {"1": public, "2": question}
    answer = "はい、3日で届きます 🙂 שלום"
    r = await live.http.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "answer": {"answer": answer}},
    )
    assert r.status_code == 200
    for _ in range(400):
        if live.channel.to(shop.customer_phone):
            break
        await asyncio.sleep(0.02)
    assert answer in live.channel.to(shop.customer_phone)[0].body


async def test_oversized_bodies_are_refused_with_413(live: LiveStack, db, shop_factory) -> None:
    shop = await shop_factory()
    before = await _counts(db, shop.merchant_id)
    big = "x" * (300 * 1024)
    r = await live.http.post(
        "/v1/notifications",
        json={
            "type": "user_question_request",
            "conversation_id": shop.conversation_id,
            "context": {"question": big},
        },
    )
    TALLY.count("oversized", r.status_code)
    assert_envelope(r, 413)
    assert await _counts(db, shop.merchant_id) == before
