"""The notification commands of the CLI (DESIGN §3): exit 0 on success, 2 on invalid input
(message on stderr), 1 on other failures, ``--json`` on stdout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from notifyflow.cli import app
from notifyflow.config import get_settings
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import Notification
from tests.fixtures.database import MerchantFactory
from tests.fixtures.lifecycle import FakeTwilioChannel, running_worker

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[None]:
    """The CLI reads the environment once (cached): point it at the test database and at a
    Temporal that is certainly not there."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    # Wide enough that Rich does not wrap table headers.
    monkeypatch.setenv("COLUMNS", "160")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


async def run_async(*args: str) -> Result:
    # The CLI runs its own event loop (asyncio.run): give it a thread.
    return await asyncio.to_thread(run, *args)


def error_of(result: Result) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(result.stdout)["error"]
    return envelope


BAD_INPUT = [
    (["show", "NOTIF_0"], "malformed_id"),
    (["show", "NOTIF_01"], "malformed_id"),
    (["close", "NOTIF_2147483648", "--reason", "x"], "malformed_id"),
    (["answer", "abc", "--by", "1", "--answer", '{"answer": "x"}'], "malformed_id"),
    (["answer", "NOTIF_1", "--by", "1", "--answer", "ten to four"], "not_json"),
    (["answer", "NOTIF_1", "--by", "1", "--answer", '["x"]'], "not_json"),
    (["answer", "NOTIF_1", "--by", "0", "--answer", '{"answer": "x"}'], "invalid_input"),
    (["request", "user_complaint", "--conversation", "1", "--context", "{}"], "unknown_type"),
    (["request", "user_question_request", "--conversation", "1", "--context", "{"], "not_json"),
    (["request", "user_question_request", "--conversation", "1", "--context", '"q"'], "not_json"),
    (
        ["request", "user_question_request", "--conversation", "-4", "--context", "{}"],
        "invalid_input",
    ),
    (["answer", "NOTIF_1", "--by", "1", "--answer", '{"answer": "\\u0000"}'], "invalid_input"),
    (
        [
            "request",
            "user_question_request",
            "--conversation",
            "1",
            "--context",
            '{"question": "\\ud800"}',
        ],
        "invalid_input",
    ),
    (["correct", "NOTIF_x", "--by", "1", "--answer", '{"answer": "x"}'], "malformed_id"),
    (["correct", "NOTIF_1", "--by", "1", "--answer", "ten to four"], "not_json"),
    (["list", "--status", "pending"], "invalid_input"),
    (["list", "--type", "user_complaint"], "unknown_type"),
]


@pytest.mark.parametrize(
    ("args", "code"), BAD_INPUT, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_invalid_input_exits_2_before_connecting(cli_env: None, args: list[str], code: str) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1

    result = run(*args, "--json")
    assert result.exit_code == 2
    assert error_of(result)["code"] == code
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(cli_env: None) -> None:
    result = run("request", "user_question_request", "--conversation", "abc", "--context", "{}")
    assert result.exit_code == 2
    result = run("answer", "NOTIF_1", "--answer", "{}")  # --by is required
    assert result.exit_code == 2


def test_temporal_unreachable_is_one_line_and_exit_1(cli_env: None) -> None:
    result = run(
        "request",
        "user_question_request",
        "--conversation",
        "1",
        "--context",
        '{"question": "Open on Sunday?"}',
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: cannot reach Temporal at 127.0.0.1:1")
    assert "Traceback" not in result.output

    result = run("close", "NOTIF_1", "--json")
    assert result.exit_code == 1
    assert error_of(result)["code"] == "unavailable"


async def _notification(db: SessionFactory, make_merchant: MerchantFactory) -> tuple[str, int]:
    shop = await make_merchant(admins=1)
    async with db() as session:
        row = Notification(
            type="user_question_request",
            status="requested",
            merchant_id=shop.merchant_id,
            conversation_id=shop.conversation_id,
            context={"question": "Do you ship to Canada?"},
        )
        session.add(row)
        await session.commit()
    return f"NOTIF_{row.id}", shop.merchant_id


async def test_show_and_list_read_the_database_without_temporal(
    cli_env: None, db: SessionFactory, make_merchant: MerchantFactory
) -> None:
    public, merchant_id = await _notification(db, make_merchant)

    result = await run_async("show", f"  {public} ", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["notification"]["notification_id"] == public
    assert shown["notification"]["context"]["question"] == "Do you ship to Canada?"
    assert shown["timeline"][0]["event"] == "requested"

    result = await run_async("show", public)
    assert result.exit_code == 0, result.output
    assert public in result.stdout and "timeline" in result.stdout
    assert "Do you ship to Canada?" in result.stdout

    result = await run_async("list", "--merchant", str(merchant_id), "--json")
    assert result.exit_code == 0, result.output
    assert [n["notification_id"] for n in json.loads(result.stdout)] == [public]
    result = await run_async(
        "list", "--merchant", str(merchant_id), "--status", "delivered", "--json"
    )
    assert json.loads(result.stdout) == []

    result = await run_async("list", "--merchant", str(merchant_id))
    assert result.exit_code == 0
    for column in ("id", "type", "status", "merchant", "age", "time to answer"):
        assert column in result.stdout
    assert public in result.stdout

    result = await run_async("show", "NOTIF_2147483000", "--json")
    assert result.exit_code == 2
    assert error_of(result)["code"] == "not_found"


async def test_database_unreachable_is_exit_1(
    monkeypatch: pytest.MonkeyPatch, cli_env: None
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = await run_async("list")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: database error at postgresql+psycopg://nobody:***@127.0.0.1:1")
    assert "pw@" not in result.output


async def test_request_answer_show_close_through_temporal(
    monkeypatch: pytest.MonkeyPatch,
    cli_env: None,
    dev_env,  # type: ignore[no-untyped-def]
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_env.client.namespace)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", task_queue)
    get_settings.cache_clear()
    shop = await shop_factory()
    context = json.dumps({"question": "Do you open on holidays?"})
    async with running_worker(dev_env.client, db, task_queue, channel):
        result = await run_async(
            "request",
            "user_question_request",
            "--conversation",
            str(shop.conversation_id),
            "--context",
            context,
            "--idempotency-key",
            f"cli-{task_queue}",
            "--json",
        )
        assert result.exit_code == 0, result.output
        public = json.loads(result.stdout)["notification_id"]
        again = await run_async(
            "request",
            "user_question_request",
            "--conversation",
            str(shop.conversation_id),
            "--context",
            context,
            "--idempotency-key",
            f"cli-{task_queue}",
            "--json",
        )
        assert json.loads(again.stdout)["notification_id"] == public

        # Wait until the admins were asked, then answer as one of them.
        for _ in range(400):
            if all(channel.to(a.phone) for a in shop.admins):
                break
            await asyncio.sleep(0.05)
        answer = json.dumps({"answer": "Yes, 10:00 to 14:00."})
        result = await run_async(
            "answer", public, "--by", str(shop.admins[0].id), "--answer", answer, "--json"
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {
            "notification_id": public,
            "status": "answered",
            "accepted": True,
        }
        result = await run_async(
            "answer", public, "--by", str(shop.admins[1].id), "--answer", answer
        )
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ")

        other = await run_async(
            "request",
            "user_question_request",
            "--conversation",
            str(shop.conversation_id),
            "--context",
            context,
        )
        assert other.exit_code == 0, other.output
        other_id = other.stdout.split()[0]
        result = await run_async("close", other_id, "--reason", "Answered by phone", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["status"] == "closed"

    result = await run_async("show", public, "--json")
    shown = json.loads(result.stdout)
    assert [a["accepted"] for a in shown["notification"]["answers"]] == [True, False]
    assert any(e["event"].startswith("sent") for e in shown["timeline"])


async def test_correct_and_show_the_correction(
    monkeypatch: pytest.MonkeyPatch,
    cli_env: None,
    dev_env,  # type: ignore[no-untyped-def]
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory,  # type: ignore[no-untyped-def]
) -> None:
    """``notifyflow correct`` (DESIGN §10): a new version; ``show`` marks it a correction;
    a notification not delivered is refused with exit 2 and ``not_delivered``."""
    from notifyflow import starter
    from tests.fixtures.lifecycle import settings_for
    from tests.workflows.helpers import result as outcome_of

    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_env.client.namespace)
    monkeypatch.setenv("TEMPORAL_TASK_QUEUE", task_queue)
    get_settings.cache_clear()
    shop = await shop_factory()
    by = str(shop.admins[0].id)
    async with running_worker(dev_env.client, db, task_queue, channel):
        publics = []
        for question in ("Open on Sunday?", "Gift wrap?"):
            view = await starter.request_notification(
                dev_env.client,
                db,
                type="user_question_request",
                conversation_id=shop.conversation_id,
                context={"question": question},
                settings=settings_for(task_queue),
            )
            publics.append(view.notification_id)
        public, waiting = publics
        await starter.answer_notification(
            dev_env.client, db, public, answered_by=shop.admins[0].id, answer={"answer": "Yes."}
        )
        await outcome_of(dev_env.client, public)
        fixed = json.dumps({"answer": "No, closed on Sundays."})
        result = await run_async("correct", public, "--by", by, "--answer", fixed, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {
            "notification_id": public,
            "version": 2,
            "status": "pending",
            "duplicate": False,
        }
        refused = await run_async("correct", waiting, "--by", by, "--answer", fixed, "--json")
        assert refused.exit_code == 2 and error_of(refused)["code"] == "not_delivered"
        await dev_env.client.get_workflow_handle(f"{public}:correction-2").result()
    shown = await run_async("show", public)
    assert shown.exit_code == 0, shown.output
    assert "correction v2" in shown.stdout
