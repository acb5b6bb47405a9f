"""Operators act on notifications from the Temporal UI: read the ``status`` query, signal
``answer`` and ``close``, filter the list by the four search attributes. Tested exactly as an
operator would, with the pinned ``temporal`` CLI against the real dev server, a real worker
and the real database; the commands are the ones the README's "Operating it" section and
docs/operations.md show, and those documents' own commands are run as written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from notifyflow import starter
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import NotificationAnswer
from notifyflow.models.views import NotificationView
from tests.fixtures.lifecycle import FakeTwilioChannel, Shop, running_worker, settings_for

TEMPORAL = Path(sys.prefix) / "bin" / "temporal"
CLI_TIMEOUT = 30.0
QUESTION = "Do you ship to the Canary Islands?"


@dataclass(frozen=True)
class Run:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> Run:
        assert self.returncode == 0, f"{self.command}\nexit {self.returncode}\n{self.stderr}"
        return self


class Operator:
    """A shell with ``TEMPORAL_ADDRESS`` pointing at the dev server — the same variable
    notifyflow reads — and nothing else of this process's environment."""

    def __init__(self, address: str, home: Path) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # A clean HOME: no operator's config profile (~/.config/temporalio) leaks in.
            "HOME": str(home),
            "TEMPORAL_ADDRESS": address,
        }

    async def run(self, command: str) -> Run:
        """``command`` as an operator types it: ``.venv/bin/temporal workflow …``."""
        argv = shlex.split(command)
        assert Path(argv[0]).name == "temporal", command
        # The CLI waits on the worker (a query is answered by it), which runs on this loop:
        # the subprocess must not block it.
        process = await asyncio.create_subprocess_exec(
            str(TEMPORAL),
            *argv[1:],
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Run(command, process.returncode, out.decode(), err.decode())

    async def query_status(self, workflow_id: str) -> dict[str, Any]:
        """The ``status`` query's JSON, from the CLI's JSON output."""
        run = (
            await self.run(
                f".venv/bin/temporal workflow query --workflow-id {workflow_id} "
                "--name status -o json"
            )
        ).ok()
        result = json.loads(run.stdout)["queryResult"]
        assert isinstance(result, list) and len(result) == 1, run.stdout
        status: dict[str, Any] = result[0]
        return status

    async def list_ids(self, query: str) -> set[str]:
        """Workflow ids the list shows for a visibility query (as typed in the UI's filter)."""
        run = (
            await self.run(f".venv/bin/temporal workflow list --query {shlex.quote(query)}")
        ).ok()
        return set(re.findall(r"\bNOTIF_\d+\b", run.stdout))


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Visibility (the list) and the database follow the workflow by a few milliseconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@dataclass
class Desk:
    """What one test works with: the operator's shell, a running worker, fresh merchants."""

    operator: Operator
    channel: FakeTwilioChannel
    db: SessionFactory
    client: Any
    task_queue: str
    shop_factory: Callable[..., Awaitable[Shop]]

    async def request(
        self, shop: Shop, type_: str = "user_question_request", **context: str
    ) -> str:
        field = "question" if type_ == "user_question_request" else "support_request_reason"
        view = await starter.request_notification(
            self.client,
            self.db,
            type=type_,
            conversation_id=shop.conversation_id,
            context=context or {field: QUESTION},
            settings=settings_for(self.task_queue),
        )
        return view.notification_id

    async def view(self, notification_id: str) -> NotificationView:
        return await starter.get_notification(self.db, notification_id)

    async def opened(self, notification_id: str) -> dict[str, Any]:
        """The status query once the workflow has recorded its recipients."""

        async def check() -> dict[str, Any] | None:
            status = await self.operator.query_status(notification_id)
            return status if status["recipients"] else None

        opened: dict[str, Any] = await eventually(check, f"{notification_id} to open")
        return opened

    async def status_in(self, notification_id: str, *statuses: str) -> NotificationView:
        async def check() -> NotificationView | None:
            view = await self.view(notification_id)
            return view if view.status in statuses else None

        view: NotificationView = await eventually(check, f"{notification_id} in {statuses}")
        return view


@pytest_asyncio.fixture
async def desk(
    dev_env: WorkflowEnvironment,
    db: SessionFactory,
    task_queue: str,
    channel: FakeTwilioChannel,
    shop_factory: Callable[..., Awaitable[Shop]],
    tmp_path: Path,
) -> AsyncIterator[Desk]:
    address = dev_env.client.service_client.config.target_host
    async with running_worker(dev_env.client, db, task_queue, channel):
        yield Desk(
            Operator(address, tmp_path), channel, db, dev_env.client, task_queue, shop_factory
        )


def answer_signal(notification_id: str, answered_by: int, answer: object) -> str:
    """The README's ``signal answer`` command, with the payload an operator pastes."""
    payload = json.dumps(
        {
            "notification_id": notification_id,
            "answered_by": answered_by,
            "answer_json": answer if isinstance(answer, str) else json.dumps(answer),
            "source": "ui",
        }
    )
    return (
        f".venv/bin/temporal workflow signal --workflow-id {notification_id} --name answer "
        f"--input {shlex.quote(payload)}"
    )


# ---- query ----------------------------------------------------------------------------------


async def test_query_status_shows_the_status_json(desk: Desk) -> None:
    shop = await desk.shop_factory()
    notification_id = await desk.request(shop)
    status = await desk.opened(notification_id)
    assert status["notification_id"] == notification_id
    assert status["status"] == "requested"
    assert status["stage"] == "waiting for an answer"
    assert set(status["recipients"]) == {admin.id for admin in shop.admins}
    # The CLI re-renders the JSON payload: an empty list shows as null.
    assert status["answered_by"] is None and not status["rejected"]

    # The plain command of the README, as an operator reads it: the same JSON, in text form.
    run = (
        await desk.operator.run(
            f".venv/bin/temporal workflow query --workflow-id {notification_id} --name status"
        )
    ).ok()
    assert f'"notification_id":"{notification_id}"' in run.stdout.replace(" ", "")
    assert '"status":"requested"' in run.stdout.replace(" ", "")


# ---- signal answer --------------------------------------------------------------------------


async def test_answer_by_signal_reaches_the_customer(desk: Desk) -> None:
    shop = await desk.shop_factory()
    notification_id = await desk.request(shop)
    await desk.opened(notification_id)
    admin = shop.admins[1].id

    run = await desk.operator.run(
        answer_signal(notification_id, admin, {"answer": "Yes, in 3 to 5 days."})
    )
    run.ok()

    view = await desk.status_in(notification_id, "delivered", "delivery_failed")
    assert view.status == "delivered" and view.answered_at is not None
    [answer] = view.answers
    assert answer.accepted and answer.answered_by == admin and answer.source == "ui"
    to_customer = desk.channel.to(shop.customer_phone)
    assert [sent.kind for sent in to_customer] == ["text"]  # their window is open: direct
    assert "3 to 5 days" in to_customer[0].body

    status = await desk.operator.query_status(notification_id)
    assert status["status"] == "delivered" and status["answered_by"] == admin
    n = notification_id.removeprefix("NOTIF_")
    assert await eventually(
        lambda: desk.operator.list_ids(f'NotificationStatus="delivered" AND NotificationId={n}'),
        "the delivered status to be searchable",
    ) == {notification_id}


async def test_an_invalid_answer_by_signal_is_refused_and_changes_nothing(desk: Desk) -> None:
    shop = await desk.shop_factory()
    other_shop = await desk.shop_factory()
    notification_id = await desk.request(shop)
    await desk.opened(notification_id)
    admin = shop.admins[0].id

    attempts = [
        # Another merchant's admin: not allowed.
        answer_signal(notification_id, other_shop.admins[0].id, {"answer": "Sure."}),
        # A field the schema does not have.
        answer_signal(notification_id, admin, {"reply": "Sure."}),
        # Not JSON at all.
        answer_signal(notification_id, admin, "sure"),
        # The payload names another notification.
        answer_signal(notification_id, admin, {"answer": "Sure."}).replace(
            f'"notification_id": "{notification_id}"', '"notification_id": "NOTIF_2147483000"'
        ),
    ]
    for command in attempts:
        # A signal is always delivered; the workflow refuses it.
        (await desk.operator.run(command)).ok()

    async def all_recorded() -> list[NotificationAnswer] | None:
        async with desk.db() as session:
            rows = (
                await session.scalars(
                    select(NotificationAnswer).where(
                        NotificationAnswer.notification_id
                        == int(notification_id.removeprefix("NOTIF_"))
                    )
                )
            ).all()
        return list(rows) if len(rows) == len(attempts) else None

    rows = await eventually(all_recorded, "the refusals to be recorded")
    assert not any(row.accepted for row in rows)
    assert {row.source for row in rows} == {"ui"}
    assert {row.reason_code for row in rows} >= {"not_allowed", "not_json", "wrong_notification"}

    status = await desk.operator.query_status(notification_id)
    assert status["status"] == "requested" and status["answered_by"] is None
    assert len(status["rejected"]) == len(attempts)
    assert {r["source"] for r in status["rejected"]} == {"ui"}
    view = await desk.view(notification_id)
    assert view.status == "requested" and view.answered_at is None
    assert desk.channel.to(shop.customer_phone) == []

    # Still open: a valid answer after the refused ones is accepted.
    (await desk.operator.run(answer_signal(notification_id, admin, {"answer": "Yes."}))).ok()
    assert (await desk.status_in(notification_id, "delivered")).answered_at is not None


# ---- signal close ---------------------------------------------------------------------------


async def test_close_by_signal_closes_an_open_notification(desk: Desk) -> None:
    shop = await desk.shop_factory()
    notification_id = await desk.request(shop, "user_support_request", support_request_reason="?")
    await desk.opened(notification_id)

    (
        await desk.operator.run(
            f".venv/bin/temporal workflow signal --workflow-id {notification_id} --name close "
            """--input '{"reason": "dup"}'"""
        )
    ).ok()

    view = await desk.status_in(notification_id, "closed")
    assert view.closed_at is not None and view.answered_at is None
    assert desk.channel.to(shop.customer_phone) == []  # closing tells the admins, not the customer
    n = notification_id.removeprefix("NOTIF_")
    assert await eventually(
        lambda: desk.operator.list_ids(f'NotificationStatus="closed" AND NotificationId={n}'),
        "the closed status to be searchable",
    ) == {notification_id}

    # A closed notification takes no answer: the workflow refuses the signal, or has already
    # completed and Temporal does.
    await desk.operator.run(answer_signal(notification_id, shop.admins[0].id, {"answer": "x"}))
    view = await desk.view(notification_id)
    assert view.status == "closed" and not any(a.accepted for a in view.answers)


# ---- list filters ---------------------------------------------------------------------------


async def test_list_filters_by_the_four_search_attributes(desk: Desk) -> None:
    shop = await desk.shop_factory()
    other = await desk.shop_factory()
    question = await desk.request(shop)
    support = await desk.request(shop, "user_support_request", support_request_reason="Broken")
    elsewhere = await desk.request(other)
    ids = {question, support, elsewhere}
    for notification_id in ids:
        await desk.opened(notification_id)

    mine = f"MerchantId={shop.merchant_id}"
    cases = {
        f'NotificationStatus="requested" AND {mine}': {question, support},
        f'NotificationStatus = "requested" AND MerchantId = {other.merchant_id}': {elsewhere},
        f'NotificationType="user_support_request" AND {mine}': {support},
        f'NotificationType = "user_question_request" AND NotificationStatus = "requested" '
        f"AND {mine}": {question},
        f"NotificationId={question.removeprefix('NOTIF_')}": {question},
        f'NotificationStatus IN ("delivery_failed", "expired") AND {mine}': set(),
    }
    for query, expected in cases.items():

        async def matches(query: str = query, expected: set[str] = expected) -> bool:
            return await desk.operator.list_ids(query) & ids == expected

        assert await eventually(matches, query), query

    # Once answered and delivered, it leaves the "open requests" view.
    (await desk.operator.run(answer_signal(question, shop.admins[0].id, {"answer": "Y"}))).ok()
    await desk.status_in(question, "delivered")

    async def left() -> bool:
        return await desk.operator.list_ids(f'NotificationStatus="requested" AND {mine}') == {
            support
        }

    assert await eventually(left, "the delivered one to leave the open list")


# ---- the documented commands, as written -----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = {
    # Where operators read the commands, and the part of the file that shows them.
    "README": (ROOT / "README.md", "## Operating it"),
    "operations": (ROOT / "docs" / "operations.md", "## Operator commands"),
}


def documented(name: str) -> tuple[str, list[str], list[str]]:
    """A document's operator section, its list filters (plain code blocks, one per line, as
    typed in the UI) and its ``temporal`` commands (bash blocks, continuations joined)."""
    path, heading = DOCUMENTS[name]
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    filters = [
        line.strip()  # as written, a trailing "-- comment" included
        for lang, body in blocks
        if lang == ""
        for line in body.splitlines()
        if line.strip()
    ]
    commands = [
        line.strip()
        for lang, body in blocks
        if lang == "bash"
        for line in re.sub(r"\\\n\s*", " ", body).splitlines()
        if line.strip().startswith(".venv/bin/temporal")
    ]
    return section, filters, commands


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
async def test_the_documented_operator_commands_work_as_written(desk: Desk, document: str) -> None:
    """Every list filter and ``temporal`` command an operator reads in the README's "Operating
    it" and in docs/operations.md, with their example ids (NOTIF_12, merchant 1, merchant user
    3) replaced by this test's: the answer goes to one notification, the close to another."""
    section, filters, commands = documented(document)
    assert commands, f"{document} shows no temporal command"
    shop = await desk.shop_factory()
    support = await desk.request(shop, "user_support_request", support_request_reason="Late")
    question = await desk.request(shop)
    await desk.opened(support)
    await desk.opened(question)
    admin = shop.admins[0].id

    def ours(text: str) -> str:
        target = support if "--name close" in text else question
        text = re.sub(r"MerchantId\s*=\s*1\b", f"MerchantId = {shop.merchant_id}", text)
        text = re.sub(r"NotificationId\s*=\s*12\b", f"NotificationId = {question[6:]}", text)
        text = text.replace('"answered_by": 3', f'"answered_by": {admin}')
        return text.replace("NOTIF_12", target)

    lists = [c for c in commands if " workflow list " in c] + [
        f".venv/bin/temporal workflow list --query {shlex.quote(query)}" for query in filters
    ]
    queries = [c for c in commands if " workflow query " in c]
    signals = [c for c in commands if " workflow signal " in c]
    assert queries and any("--name close" in c for c in signals), commands

    first_filter = ours(shlex.split(lists[0])[-1])

    async def lists_the_open_requests() -> bool:
        return await desk.operator.list_ids(first_filter) == {support, question}

    assert await eventually(lists_the_open_requests, f"{document}'s filter {first_filter!r}")
    for command in lists:
        (await desk.operator.run(ours(command))).ok()
    for command in queries:
        run = (await desk.operator.run(ours(command))).ok()
        assert question in run.stdout and '"status":"requested"' in run.stdout.replace(" ", "")

    answers = [c for c in signals if "--name answer" in c]
    if not answers:
        # The README shows the answer signal's payload in prose: pasted as it is shown.
        shown = re.search(r"`(\{\"notification_id\".*?\})`", section, flags=re.S)
        assert shown, f"{document} shows no answer signal"
        answers = [
            ".venv/bin/temporal workflow signal --workflow-id NOTIF_12 --name answer "
            f"--input {shlex.quote(shown.group(1))}"
        ]
    for command in answers + [c for c in signals if c not in answers]:
        payload = shlex.split(ours(command))[-1]
        assert set(json.loads(payload)) <= {
            "notification_id",
            "answered_by",
            "answer_json",
            "source",
            "reason",
        }
        (await desk.operator.run(ours(command))).ok()

    assert (await desk.status_in(support, "closed")).closed_at is not None
    answered = await desk.status_in(question, "delivered")
    assert [(a.accepted, a.source, a.answered_by) for a in answered.answers] == [
        (True, "ui", admin)
    ]


@pytest.fixture(autouse=True)
def _cli_present() -> None:
    assert TEMPORAL.exists(), f"the pinned temporal CLI is missing at {TEMPORAL}"
