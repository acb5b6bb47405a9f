"""Answer templates (canned answers, DESIGN §10): stored per merchant and type, validated
when stored and again at use; an answer naming one (``{"template": code}``) delivers the
template's answer, and answers[] says which template it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from notifyflow import starter
from notifyflow.api.app import create_app
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import AnswerTemplate, Notification
from notifyflow.history_costs import history_cost
from notifyflow.models.errors import NotificationError
from notifyflow.models.ids import parse_notification_id
from tests.api.conftest import assert_envelope, client_for, paths
from tests.api.test_cli import cli_env, error_of, run_async  # noqa: F401 - a fixture
from tests.api.test_notification_routes import ask, until_sent, until_status
from tests.figures import figure
from tests.fixtures.database import MerchantFactory
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for
from tests.workflows.helpers import result

HOURS = {"answer": "We open Monday to Friday, 9:00 to 18:00."}


def templates_url(merchant_id: int) -> str:
    return f"/v1/merchants/{merchant_id}/answer-templates"


async def create(
    api: httpx.AsyncClient,
    merchant_id: int,
    code: str,
    answer: dict[str, Any],
    type: str = "user_question_request",
) -> dict[str, Any]:
    response = await api.post(
        templates_url(merchant_id), json={"code": code, "type": type, "answer": answer}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listed(api: httpx.AsyncClient, merchant_id: int, **params: Any) -> list[dict[str, Any]]:
    response = await api.get(templates_url(merchant_id), params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# ---- CRUD and validation (no workflow needed) -----------------------------------------------


async def test_templates_are_created_listed_replaced_and_deleted(
    api: httpx.AsyncClient, make_merchant: MerchantFactory
) -> None:
    shop = await make_merchant()
    created = await create(api, shop.merchant_id, "hours", HOURS)
    assert created["code"] == "hours" and created["answer"] == HOURS
    assert created["merchant_id"] == shop.merchant_id and created["use_count"] == 0
    await create(
        api,
        shop.merchant_id,
        "refund",
        {"agent_response_to_customer": "Your refund is on its way.", "resolution_notes": "x"},
        type="user_support_request",
    )
    assert [t["code"] for t in await listed(api, shop.merchant_id)] == ["hours", "refund"]
    only = await listed(api, shop.merchant_id, type="user_support_request")
    assert [t["code"] for t in only] == ["refund"]
    # A page of them, with a cursor to the next.
    first = (await api.get(templates_url(shop.merchant_id), params={"limit": 1})).json()
    assert [t["code"] for t in first["items"]] == ["hours"] and first["next_cursor"]
    second = (
        await api.get(
            templates_url(shop.merchant_id), params={"limit": 1, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [t["code"] for t in second["items"]] == ["refund"] and second["next_cursor"] is None

    # A code the merchant has is 409 (nothing changes); PUT replaces it.
    again = await api.post(
        templates_url(shop.merchant_id),
        json={"code": "hours", "type": "user_question_request", "answer": {"answer": "Other"}},
    )
    assert paths(assert_envelope(again, 409, "conflict")) == {"/code"}
    assert "PUT" in again.json()["error"]["message"]
    new = {"answer": "We open Monday to Saturday, 9:00 to 18:00."}
    replaced = await api.put(
        f"{templates_url(shop.merchant_id)}/hours",
        json={"type": "user_question_request", "answer": new},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["answer"] == new and replaced.json()["id"] == created["id"]
    assert (await listed(api, shop.merchant_id))[0]["answer"] == new

    deleted = await api.delete(f"{templates_url(shop.merchant_id)}/hours")
    assert deleted.status_code == 204 and deleted.content == b""
    assert [t["code"] for t in await listed(api, shop.merchant_id)] == ["refund"]
    for gone in (
        await api.delete(f"{templates_url(shop.merchant_id)}/hours"),
        await api.put(
            f"{templates_url(shop.merchant_id)}/hours",
            json={"type": "user_question_request", "answer": new},
        ),
    ):
        assert assert_envelope(gone, 404, "not_found") == {"code": "hours"}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"code": "Hours"}, "/code"),
        ({"code": "opening hours"}, "/code"),
        ({"code": "#hours"}, "/code"),
        ({"code": ""}, "/code"),
        ({"code": "h" * 33}, "/code"),
        ({"code": "horário"}, "/code"),
        ({"type": "user_complaint"}, "/type"),
        ({"answer": {"answer": ""}}, "/answer/answer"),
        ({"answer": {"answer": "   "}}, "/answer/answer"),
        ({"answer": {"reply": "We open at 9."}}, "/answer/answer"),
        ({"answer": {"answer": 9}}, "/answer/answer"),
        ({"answer": {"answer": "x" * 5000}}, "/answer"),
        # A support answer for a question template: it does not fit the question's schema.
        ({"answer": {"agent_response_to_customer": "Sorry!"}}, "/answer/answer"),
        ({"answer": None}, "/answer"),
        ({"extra": 1}, "/extra"),
    ],
)
async def test_a_bad_template_is_422_naming_the_field_and_nothing_is_stored(
    api: httpx.AsyncClient, make_merchant: MerchantFactory, body: dict[str, Any], path: str
) -> None:
    shop = await make_merchant()
    full = {"code": "hours", "type": "user_question_request", "answer": HOURS, **body}
    refused = await api.post(templates_url(shop.merchant_id), json=full)
    details = assert_envelope(refused, 422)
    assert path in paths(details), details
    assert await listed(api, shop.merchant_id) == []


async def test_an_unknown_merchant_is_404(api: httpx.AsyncClient) -> None:
    url = templates_url(2147483000)
    body = {"code": "hours", "type": "user_question_request", "answer": HOURS}
    for response in (
        await api.get(url),
        await api.post(url, json=body),
        await api.delete(f"{url}/hours"),
    ):
        assert assert_envelope(response, 404, "not_found") == {"merchant_id": 2147483000}


# ---- use: the answer route on the real workflow ---------------------------------------------


@pytest_asyncio.fixture
async def live(
    dev_env: Any, db: SessionFactory, task_queue: str, channel: FakeTwilioChannel
) -> AsyncIterator[httpx.AsyncClient]:
    """The API wired to the dev server, with a worker on this test's own task queue."""
    app = create_app(settings_for(task_queue), temporal_client=dev_env.client, session_factory=db)
    async with running_worker(dev_env.client, db, task_queue, channel):
        async with client_for(app) as client:
            yield client


async def test_an_answer_naming_a_template_delivers_its_answer_and_says_which(
    live: httpx.AsyncClient,
    db: SessionFactory,
    shop_factory: Callable[..., Any],
    channel: FakeTwilioChannel,
) -> None:
    shop: Shop = await shop_factory(language="en")
    await create(live, shop.merchant_id, "hours", HOURS)
    public = await ask(live, shop)
    await until_sent(live, public)
    answered = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": shop.admins[0].id, "template": "hours"},
    )
    assert answered.status_code == 200, answered.text
    body = await until_status(live, public, {"delivered"})
    (answer,) = body["answers"]
    assert answer["accepted"] and answer["template"] == "hours"
    # What was stored is the template's answer itself.
    assert json.loads(answer["answer"]) == HOURS
    (to_customer,) = channel.to(shop.customer_phone)
    assert HOURS["answer"] in to_customer.body
    # notifyflow show's timeline names it too.
    timeline = await starter.notification_timeline(db, public)
    (accepted,) = [e for e in timeline if e.event == "answer accepted"]
    assert accepted.detail == f"by {shop.admins[0].name} via api with template #hours"
    (template,) = await listed(live, shop.merchant_id)
    assert template["use_count"] == 1 and template["last_used_at"] is not None

    # The same, as the answer object: {"answer": {"template": code}}.
    other = await ask(live, shop)
    await until_sent(live, other)
    again = await live.post(
        f"/v1/notifications/{other}/answer",
        json={"answered_by": shop.admins[1].id, "answer": {"template": "hours"}},
    )
    assert again.status_code == 200, again.text
    body = await until_status(live, other, {"delivered"})
    assert body["answers"][0]["template"] == "hours"


async def test_an_unknown_code_is_refused_naming_the_codes_there_are(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any]
) -> None:
    shop: Shop = await shop_factory()
    await create(live, shop.merchant_id, "hours", HOURS)
    await create(live, shop.merchant_id, "returns", {"answer": "30 days, free."})
    await create(
        live,
        shop.merchant_id,
        "refund",
        {"agent_response_to_customer": "Refunded."},
        type="user_support_request",
    )
    public = await ask(live, shop)
    await until_sent(live, public)
    # "refund" exists, but for support requests: not a template for a question.
    for code in ("opening", "refund"):
        refused = await live.post(
            f"/v1/notifications/{public}/answer",
            json={"answered_by": shop.admins[0].id, "template": code},
        )
        (detail,) = assert_envelope(refused, 422, "unknown_template")
        assert detail["path"] == "/answer/template"
        assert sorted(detail["available"]) == ["hours", "returns"]
        message = refused.json()["error"]["message"]
        assert f"'{code}'" in message and "#hours" in message and "#returns" in message
    body = (await live.get(f"/v1/notifications/{public}")).json()
    assert body["status"] == "requested"
    # Recorded as refusals, like every refused answer, with the code the answer named.
    assert [(a["accepted"], a["reason_code"], a["template"]) for a in body["answers"]] == [
        (False, "unknown_template", "opening"),
        (False, "unknown_template", "refund"),
    ]


async def test_a_template_that_no_longer_fits_is_refused_with_the_reason(
    live: httpx.AsyncClient, db: SessionFactory, shop_factory: Callable[..., Any]
) -> None:
    shop: Shop = await shop_factory()
    await create(live, shop.merchant_id, "hours", HOURS)
    await create(live, shop.merchant_id, "returns", {"answer": "30 days, free."})
    public = await ask(live, shop)
    await until_sent(live, public)
    async with db() as session:
        # The stored answer edited behind the API's back (a blank text) ...
        await session.execute(
            update(AnswerTemplate)
            .where(AnswerTemplate.merchant_id == shop.merchant_id, AnswerTemplate.code == "hours")
            .values(answer={"answer": "  "})
        )
        # ... and the notification's schema changed since "returns" was stored.
        row = await session.get(Notification, parse_notification_id(public))
        assert row is not None
        schema = dict(row.answer_schema)
        schema["required"] = ["answer", "opening_days"]
        schema["properties"] = {**schema["properties"], "opening_days": {"type": "string"}}
        row.answer_schema = schema
        await session.commit()
    url = f"/v1/notifications/{public}/answer"
    blank = await live.post(url, json={"answered_by": shop.admins[0].id, "template": "hours"})
    assert_envelope(blank, 422, "schema_mismatch")
    assert "answer template 'hours' no longer fits" in blank.json()["error"]["message"]
    changed = await live.post(url, json={"answered_by": shop.admins[0].id, "template": "returns"})
    assert "/opening_days" in paths(assert_envelope(changed, 422))
    assert "'returns' no longer fits" in changed.json()["error"]["message"]
    body = (await live.get(f"/v1/notifications/{public}")).json()
    assert body["status"] == "requested"
    assert [(a["accepted"], a["template"]) for a in body["answers"]] == [
        (False, "hours"),
        (False, "returns"),
    ]


async def test_another_merchants_template_is_not_usable(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any]
) -> None:
    mine: Shop = await shop_factory()
    theirs: Shop = await shop_factory()
    await create(live, theirs.merchant_id, "hours", HOURS)
    public = await ask(live, mine)
    await until_sent(live, public)
    refused = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": mine.admins[0].id, "template": "hours"},
    )
    (detail,) = assert_envelope(refused, 422, "unknown_template")
    assert detail["available"] == []
    assert "has none" in refused.json()["error"]["message"]
    # An admin of the other merchant naming their own code on this notification learns
    # nothing of this merchant's templates: refused as not theirs to answer.
    stranger = await live.post(
        f"/v1/notifications/{public}/answer",
        json={"answered_by": theirs.admins[0].id, "template": "hours"},
    )
    assert_envelope(stranger, 403, "not_allowed")


async def test_the_instruction_message_lists_the_merchants_codes_for_the_type(
    live: httpx.AsyncClient, shop_factory: Callable[..., Any]
) -> None:
    shop: Shop = await shop_factory()
    bare = await ask(live, shop)
    no_templates = await instruction(live, await until_sent(live, bare))
    assert "Quick answers" not in no_templates
    await live.post(f"/v1/notifications/{bare}/close", json={})

    for code in ("returns", "hours", "delivery", "sizes", "gift", "stock"):
        await create(live, shop.merchant_id, code, {"answer": f"About {code}."})
    await create(
        live,
        shop.merchant_id,
        "refund",
        {"agent_response_to_customer": "Refunded."},
        type="user_support_request",
    )
    public = await ask(live, shop)
    text = await instruction(live, await until_sent(live, public))
    # At most five, for this type only (the support template is not offered).
    line = next(line for line in text.splitlines() if line.startswith("Quick answers: "))
    codes = line.split(" (")[0].removeprefix("Quick answers: ").split(", ")
    assert codes == ["#delivery", "#gift", "#hours", "#returns", "#sizes"]
    assert "#refund" not in text and "#stock" not in text
    assert f'AnswerNotificationTool(notification_id="{public}", template="delivery")' in text


async def instruction(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    conversation = body["recipients"][0]["conversation_id"]
    messages = (await api.get(f"/v1/conversations/{conversation}/messages")).json()["items"]
    # The assistant instruction (the agent in the admin's chat reads it), not the template.
    found = [
        m["content"]
        for m in messages
        if body["notification_id"] in m["content"] and "AnswerNotificationTool" in m["content"]
    ]
    assert len(found) == 1, messages
    text: str = found[0]
    return text


# ---- CLI: notifyflow answer-templates list | create | delete --------------------------------


async def test_cli_answer_templates_create_list_delete(
    cli_env: None,  # noqa: F811 - the fixture imported above
    make_merchant: MerchantFactory,
) -> None:
    shop = await make_merchant()
    merchant = str(shop.merchant_id)
    made = await run_async(
        "answer-templates",
        "create",
        "--merchant",
        merchant,
        "--code",
        "hours",
        "--type",
        "user_question_request",
        "--answer",
        json.dumps(HOURS),
        "--json",
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["code"] == "hours"
    bad = await run_async(
        "answer-templates",
        "create",
        "--merchant",
        merchant,
        "--code",
        "Opening Hours",
        "--type",
        "user_question_request",
        "--answer",
        json.dumps(HOURS),
    )
    assert bad.exit_code == 2 and "--code" in bad.stderr
    unfit = await run_async(
        "answer-templates",
        "create",
        "--merchant",
        merchant,
        "--code",
        "empty",
        "--type",
        "user_question_request",
        "--answer",
        '{"answer": ""}',
        "--json",
    )
    assert unfit.exit_code == 2 and error_of(unfit)["code"] == "schema_mismatch"
    table = await run_async("answer-templates", "list", "--merchant", merchant)
    assert table.exit_code == 0 and "#hours" in table.stdout and "#empty" not in table.stdout
    gone = await run_async("answer-templates", "delete", "#hours", "--merchant", merchant)
    assert gone.exit_code == 0, gone.output
    listed = await run_async("answer-templates", "list", "--merchant", merchant, "--json")
    assert json.loads(listed.stdout) == []
    again = await run_async("answer-templates", "delete", "hours", "--merchant", merchant, "--json")
    assert again.exit_code == 2 and error_of(again)["code"] == "not_found"


async def test_a_template_answer_costs_the_workflow_nothing_more(
    live: httpx.AsyncClient, dev_env: Any, shop_factory: Callable[..., Any]
) -> None:
    """The same answer, typed and by template: the same activities and updates in the
    history (an answer that arrives before the routing result adds a wait timer to either)."""
    shop: Shop = await shop_factory()
    await create(live, shop.merchant_id, "hours", HOURS)
    costs = []
    for answer in ({"answer": HOURS}, {"template": "hours"}):
        public = await ask(live, shop)
        await until_sent(live, public)
        answered = await live.post(
            f"/v1/notifications/{public}/answer",
            json={"answered_by": shop.admins[0].id, **answer},
        )
        assert answered.status_code == 200, answered.text
        await result(dev_env.client, public)
        history = await dev_env.client.get_workflow_handle(public).fetch_history()
        costs.append(history_cost(history))
    typed, templated = costs
    figure("notification answered by template: history events", templated.events, "events")
    figure("notification answered by template: billable actions", templated.actions, "actions")
    kinds = ("activity_task_scheduled", "workflow_execution_update_accepted")
    added = {k: templated.by_kind.get(k, 0) - typed.by_kind.get(k, 0) for k in kinds}
    figure("activities and updates added by answering with a template", sum(added.values()))
    assert added == dict.fromkeys(kinds, 0), (typed.by_kind, templated.by_kind)


async def test_an_answer_without_a_request_may_name_a_template(
    live: httpx.AsyncClient,
    dev_env: Any,
    db: SessionFactory,
    task_queue: str,
    shop_factory: Callable[..., Any],
) -> None:
    shop: Shop = await shop_factory()
    await create(live, shop.merchant_id, "hours", HOURS)
    request = {
        "type": "user_question_request",
        "conversation_id": shop.conversation_id,
        "context": {"question": "Open on Sunday?"},
        "answered_by": shop.admins[0].id,
        "settings": settings_for(task_queue),
    }
    with pytest.raises(NotificationError) as refused:
        await starter.answer_new_notification(
            dev_env.client, db, answer={"template": "sunday"}, **request
        )
    assert refused.value.code.value == "unknown_template"
    listed_before = await live.get("/v1/notifications", params={"merchant_id": shop.merchant_id})
    assert listed_before.json()["items"] == []  # refused before anything was recorded
    accepted = await starter.answer_new_notification(
        dev_env.client, db, answer={"template": "hours"}, **request
    )
    body = await until_status(live, accepted.notification_id, {"delivered"})
    assert body["answers"][0]["template"] == "hours"
    assert json.loads(body["answers"][0]["answer"]) == HOURS
