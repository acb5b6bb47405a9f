"""What the fault tests share: a fake Twilio that can hold a send, a faithful fake model, the
stack one test drives, the end-of-scenario verdict and the run's tally.

The verdict is the promise of issue 8, checked the same way after every fault: the
notification reaches the right terminal state (database and workflow result agree), the fake
Twilio accepted at most one message per (notification, recipient, kind), and the database has
no orphans or leftovers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from notifyflow import starter
from notifyflow.config import Settings
from notifyflow.db.seed import ensure_default_templates
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
    CampaignTemplate,
    Delivery,
    Notification,
    NotificationAnswer,
    NotificationRecipient,
)
from notifyflow.models.ids import format_notification_id, parse_notification_id
from notifyflow.models.notification import NotificationStatus
from notifyflow.models.workflow_io import NotificationOutcome, Stage, WorkflowStatus
from tests.fakes.openai_server import FakeAIRequest, default_responder
from tests.fakes.twilio_server import FakeTwilio, normalize_number
from tests.faults.processes import DevServer, WorkerProcess
from tests.fixtures.database import MadeMerchant, MerchantFactory

_WS = re.compile(r"\s+")


def fault_trials() -> int:
    """How many times each SIGKILL scenario runs: ``NOTIFYFLOW_FAULT_TRIALS`` (default 2;
    ``make test-full`` sets 10)."""
    return max(1, int(os.environ.get("NOTIFYFLOW_FAULT_TRIALS", "2")))


def same_text(left: str | None, right: str | None) -> bool:
    return _WS.sub(" ", left or "").strip() == _WS.sub(" ", right or "").strip()


async def until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    every: float = 0.05,
) -> None:
    """Poll ``check`` (sync or async) until true; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


# ---- the fake Twilio, plus a hold ----------------------------------------------------------


@dataclass
class Hold:
    to: str
    seconds: float
    arrived: threading.Event = field(default_factory=threading.Event)


class FaultTwilio(FakeTwilio):
    """FakeTwilio that can also hold a send for a while and then handle it as usual (so the
    message is accepted after the client may have died), and that notes when each send
    arrives, before any fault or hold applies."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__(account_sid, auth_token)
        self._holds: list[Hold] = []
        self._arrivals: list[tuple[str, float]] = []

    def hold_next(self, to: str, seconds: float) -> Hold:
        hold = Hold(normalize_number(to), seconds)
        with self._lock:
            self._holds.append(hold)
        return hold

    def arrivals(self, to: str) -> int:
        """How many sends to ``to`` have arrived (held, faulted or accepted)."""
        number = normalize_number(to)
        with self._lock:
            return sum(1 for t, _ in self._arrivals if t == number)

    def listed(self, to: str) -> int:
        """How many list calls (``find_accepted``) asked about messages to ``to``."""
        number = normalize_number(to)
        return sum(
            1
            for e in self.ledger
            if e["method"] == "GET" and normalize_number(e["query"].get("To")) == number
        )

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._holds.clear()
            self._arrivals.clear()

    async def _messages_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()  # cached by Starlette: the parent reads it again
            to = normalize_number(str(form.get("To", "")))
            with self._lock:
                self._arrivals.append((to, time.monotonic()))
                hold = next((h for h in self._holds if h.to == to), None)
                if hold is not None:
                    self._holds.remove(hold)
            if hold is not None:
                hold.arrived.set()
                await self._server.sleep(hold.seconds)
        return await super()._messages_endpoint(request)


async def register_templates(db: SessionFactory, twilio: FakeTwilio) -> None:
    """The fake renders (and lists) a template's body only for Content SIDs it knows, as
    real Twilio does for approved templates: register every template in the database."""
    await ensure_default_templates(db)
    async with db() as session:
        for row in (await session.scalars(select(CampaignTemplate))).all():
            twilio.register_template(row.content_sid, row.body)


# ---- a model that does what it is told -----------------------------------------------------

_BLOCK = re.compile(r"<data-([a-z-]+)>\n(.*?)\n</data-\1>", re.DOTALL)
AI_MARK = "(localized)"


def data_blocks(req: FakeAIRequest) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _BLOCK.finditer(req.prompt_text)}


def faithful_responder(req: FakeAIRequest) -> str:
    """Localize = the admin's words with a mark (so a fallback is visible: it has no mark);
    compose = the merchant answer as given; classify = the team named in the request."""
    blocks = data_blocks(req)
    if req.schema_name == "LocalizedMessage":
        words = " ".join(blocks.get("merchant-reply", "").split())
        return json.dumps(
            {"continuation_fragment": f"{AI_MARK} {words}", "full_sentence": f"{AI_MARK} {words}"}
        )
    if req.schema is None and "merchant-answer" in blocks:
        return blocks["merchant-answer"].strip()
    return default_responder(req)


def drifting_responder() -> Callable[[FakeAIRequest], str]:
    """Like :func:`faithful_responder`, but every composed reply is worded a little
    differently, as a real model's (temperature > 0) is."""
    drafts = itertools.count(1)

    def respond(req: FakeAIRequest) -> str:
        blocks = data_blocks(req)
        if req.schema is None and "merchant-answer" in blocks:
            return f"{blocks['merchant-answer'].strip()} (draft {next(drafts)})"
        return faithful_responder(req)

    return respond


# ---- the stack one test drives -------------------------------------------------------------

PRODUCT_ENV = (
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "NOTIFYFLOW_AI",
    "NOTIFYFLOW_CHANNEL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "TWILIO_MESSAGING_SERVICE_SID",
    "NOTIFYFLOW_PUBLIC_URL",
)


@dataclass
class Stack:
    server: DevServer
    client: Client
    db: SessionFactory
    twilio: FaultTwilio
    openai: Any  # FakeOpenAI
    settings: Settings  # the starter's: task queue and timers
    worker: WorkerProcess
    merchants: MerchantFactory
    made: list[MadeMerchant] = field(default_factory=list)

    async def merchant(self, **kwargs: Any) -> MadeMerchant:
        made = await self.merchants(**kwargs)
        self.made.append(made)
        return made

    async def request(
        self, merchant: MadeMerchant, text: str = "Do you ship to the Canary Islands?"
    ) -> str:
        view = await starter.request_notification(
            self.client,
            self.db,
            type="user_question_request",
            conversation_id=merchant.conversation_id,
            context={"question": text},
            settings=self.settings,
        )
        return view.notification_id

    async def request_support(self, merchant: MadeMerchant, reason: str) -> str:
        view = await starter.request_notification(
            self.client,
            self.db,
            type="user_support_request",
            conversation_id=merchant.conversation_id,
            context={"support_request_reason": reason},
            settings=self.settings,
        )
        return view.notification_id

    async def answer(self, public: str, admin_id: int, words: str, field: str = "answer") -> None:
        accepted = await starter.answer_notification(
            self.client, self.db, public, answered_by=admin_id, answer={field: words}
        )
        assert accepted.accepted

    async def status(self, public: str) -> WorkflowStatus:
        handle = self.client.get_workflow_handle(public)
        result: WorkflowStatus = await handle.query("status", result_type=WorkflowStatus)
        return result

    async def wait_waiting(self, public: str, timeout: float = 60.0) -> None:
        """Until the request went out and the workflow waits for an answer."""

        async def waiting() -> bool:
            try:
                return (await self.status(public)).stage == Stage.waiting
            except RPCError:
                return False

        await until(waiting, f"{public} waiting for an answer", timeout, every=0.2)

    async def outcome(self, public: str, timeout: float = 90.0) -> NotificationOutcome:
        handle = self.client.get_workflow_handle(public, result_type=NotificationOutcome)
        result: NotificationOutcome = await asyncio.wait_for(handle.result(), timeout)
        return result

    async def wait_arrival(self, phone: str, before: int, timeout: float = 30.0) -> None:
        """Until a new send to ``phone`` reached the fake (there were ``before``)."""
        await until(
            lambda: self.twilio.arrivals(phone) > before, f"a send to {phone}", timeout, 0.01
        )


async def ledger_rows(stack: Stack, public: str, kind: str, phone: str) -> list[Delivery]:
    """The ledger rows of ``kind`` to ``phone`` for notification ``public``."""
    async with stack.db() as session:
        return [
            row
            for row in (
                await session.scalars(
                    select(Delivery).where(
                        Delivery.notification_id == parse_notification_id(public),
                        Delivery.kind == kind,
                    )
                )
            ).all()
            if normalize_number(row.to_address) == normalize_number(phone)
        ]


async def ledger_row(stack: Stack, public: str, kind: str, phone: str) -> Delivery:
    """The one ledger row of ``kind`` to ``phone`` for notification ``public``."""
    rows = await ledger_rows(stack, public, kind, phone)
    assert len(rows) == 1, f"{public}: {len(rows)} {kind} ledger rows for {phone}"
    return rows[0]


def customer_words(words: str) -> str:
    """What the customer reads when the AI fallback delivers the admin's own words."""
    return " ".join(words.split())


# ---- the verdict ---------------------------------------------------------------------------


@dataclass
class Verdict:
    lost: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> None:
        assert self.ok, "\n".join(self.problems)


def _delivery_for(message: dict[str, Any], rows: list[Delivery]) -> Delivery | None:
    """The ledger row an accepted message belongs to: by provider sid, else by recipient and
    body (a message accepted whose answer was lost, recovered by ``find_accepted``)."""
    for row in rows:
        if row.provider_message_id and row.provider_message_id == message["sid"]:
            return row
    number = normalize_number(message["to"])
    for row in rows:
        if normalize_number(row.to_address) == number and same_text(row.body, message["body"]):
            return row
    return None


async def verify(
    stack: Stack, expected: Mapping[str, str | set[str]], merchants: list[MadeMerchant]
) -> Verdict:
    """Terminal states, duplicates and orphans for ``expected`` (public id → status) and
    everything sent to the people of ``merchants``."""
    verdict = Verdict()
    ids = [parse_notification_id(p) for p in expected]
    for public, want in expected.items():
        wanted = {want} if isinstance(want, str) else set(want)
        handle = stack.client.get_workflow_handle(public, result_type=NotificationOutcome)
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.COMPLETED:
            verdict.lost += 1
            verdict.problems.append(f"{public}: workflow {description.status}, not completed")
            continue
        outcome: NotificationOutcome = await handle.result()
        async with stack.db() as session:
            row = await session.get(Notification, parse_notification_id(public))
        db_status = row.status if row else None
        if outcome.status.value not in wanted or db_status not in wanted:
            verdict.lost += 1
            verdict.problems.append(
                f"{public}: workflow says {outcome.status.value}, database {db_status}, "
                f"wanted {sorted(wanted)}"
            )

    async with stack.db() as session:
        merchant_ids = [m.merchant_id for m in merchants]
        notifications = list(
            (
                await session.scalars(
                    select(Notification).where(Notification.merchant_id.in_(merchant_ids))
                )
            ).all()
        )
        rows = list(
            (
                await session.scalars(
                    select(Delivery).where(
                        Delivery.notification_id.in_([n.id for n in notifications] or [0])
                    )
                )
            ).all()
        )
        orphans = {}
        for table in (Delivery, NotificationRecipient, NotificationAnswer):
            orphans[table.__tablename__] = await session.scalar(
                select(func.count())
                .select_from(table)
                .outerjoin(Notification, Notification.id == table.notification_id)
                .where(Notification.id.is_(None))
            )
    missing = set(ids) - {n.id for n in notifications}
    if missing:
        verdict.problems.append(f"notifications not in the database: {sorted(missing)}")
    for table, count in orphans.items():
        if count:
            verdict.problems.append(f"{count} {table} rows point at no notification")

    # At most one accepted message per (notification, recipient, kind).
    phones = {m.customer_phone for m in merchants if m.customer_phone}
    for m in merchants:
        phones.update(m.phones.values())
    for phone in sorted(phones):
        counts: Counter[tuple[int, str]] = Counter()
        for message in stack.twilio.accepted(to=phone):
            row = _delivery_for(message, rows)
            if row is None:
                verdict.duplicates += 1
                verdict.problems.append(
                    f"{phone}: accepted message {message['sid']} matches no ledger row: "
                    f"{message['body'][:80]!r}"
                )
                continue
            counts[(row.notification_id, row.kind)] += 1
        for (n, kind), count in counts.items():
            if count > 1:
                verdict.duplicates += count - 1
                verdict.problems.append(
                    f"{phone}: {count} accepted {kind} messages for {format_notification_id(n)}"
                )

    # Nothing left half-way: open notifications have a running workflow; finished ones have
    # no send still pending unless the provider refused it.
    by_id = {n.id: n for n in notifications}
    for n in notifications:
        status = NotificationStatus(n.status)
        public = format_notification_id(n.id)
        if not status.is_terminal:
            try:
                description = await stack.client.get_workflow_handle(public).describe()
                running = description.status == WorkflowExecutionStatus.RUNNING
            except RPCError:
                running = False
            if not running:
                verdict.lost += 1
                verdict.problems.append(f"{public} is {n.status} but its workflow is not running")
    for row in rows:
        notification = by_id[row.notification_id]
        if not NotificationStatus(notification.status).is_terminal or row.status != "pending":
            continue
        if row.error_code is None or row.error_code == "ambiguous":
            verdict.problems.append(
                f"{row.idempotency_key}: still pending though "
                f"{format_notification_id(row.notification_id)} is {notification.status}"
            )
    return verdict


# ---- the run's tally -----------------------------------------------------------------------


@dataclass
class Tally:
    injected: int = 0
    survived: int = 0
    lost: int = 0
    duplicates: int = 0
    by_scenario: dict[str, list[int]] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"faults injected {self.injected}, survived {self.survived}, lost {self.lost}, "
            f"duplicates {self.duplicates}"
        )

    def _row(self, name: str) -> list[int]:
        return self.by_scenario.setdefault(name, [0, 0, 0, 0])


TALLY = Tally()


class Scenario:
    """One injected fault: counted as injected at once, then survived (verdict clean) or
    lost/duplicated (verdict, or an error before the verdict could be taken)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.verdict: Verdict | None = None

    async def judge(
        self,
        stack: Stack,
        expected: Mapping[str, str | set[str]],
        merchants: list[MadeMerchant],
    ) -> Verdict:
        """The verdict on ``expected`` (public id → status) and on everything sent to the
        people of ``merchants``; counted in the tally, then asserted."""
        verdict = await verify(stack, expected, merchants)
        self.verdict = verdict
        row = TALLY._row(self.name)
        TALLY.lost += verdict.lost
        TALLY.duplicates += verdict.duplicates
        row[2] += verdict.lost
        row[3] += verdict.duplicates
        if verdict.ok:
            TALLY.survived += 1
            row[1] += 1
        verdict.check()
        return verdict


@asynccontextmanager
async def scenario(name: str) -> AsyncIterator[Scenario]:
    TALLY.injected += 1
    TALLY._row(name)[0] += 1
    current = Scenario(name)
    try:
        yield current
    except BaseException:
        if current.verdict is None:
            # The notification never got to be judged: it did not reach its end in time.
            TALLY.lost += 1
            TALLY._row(name)[2] += 1
        raise


async def run_concurrently(cases: Mapping[str, Callable[[], Awaitable[None]]]) -> None:
    """Run independent scenarios at once (each on its own merchant, phones and faults), then
    fail naming every scenario that failed."""
    results = await asyncio.gather(*(case() for case in cases.values()), return_exceptions=True)
    failures = [
        f"{name}: {type(result).__name__}: {result}"
        for name, result in zip(cases, results, strict=True)
        if isinstance(result, BaseException)
    ]
    assert not failures, "\n".join(failures)


async def drop_connections(admin_url: str, database: str) -> int:
    """``pg_terminate_backend`` every connection to ``database`` (not our own)."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def set_connections_allowed(admin_url: str, database: str, allowed: bool) -> None:
    """``ALTER DATABASE … ALLOW_CONNECTIONS``: refuses new connections to this one database,
    superusers included, while the server (shared with other sessions) keeps running."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allowed)
            )
        )
