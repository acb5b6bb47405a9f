"""What the fault tests share: a fake Twilio that can hold a send, a faithful fake model, the
stack one test drives, the end-of-trial verdict and the run's tally.

The verdict is the promise of issue 8, counted from what people received (issue 19): once every
workflow is closed and the fake Twilio has nothing in flight, the fake's ledger alone says
whether the customer of each delivered notification got exactly one message, whether anyone got
the same kind of message twice for one notification, and whether every other admin got the
closure notice (tests/fixtures/ledger.py). The workflow result, the database row and the
product's ledger rows are checked as well, but they never make a message count as received.

A trial is counted when its ``async with scenario(...)`` block ends, after every check in it:
survived only if all passed; a trial that broke before it was judged is a harness error (the
test fails), never a loss.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
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
from notifyflow.db.session import SessionFactory
from notifyflow.db.tables import (
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
from tests.fixtures.fakes import approve_templates
from tests.fixtures.ledger import Expectation, HarnessError, ledger_verdict, settle

_WS = re.compile(r"\s+")


def fault_trials() -> int:
    """How many times each SIGKILL scenario runs: ``NOTIFYFLOW_FAULT_TRIALS`` (default 1, each
    activity killed once with the three endings rotated over them, so ``make test`` stays
    within its time; ``make test-full`` sets 10)."""
    return max(1, int(os.environ.get("NOTIFYFLOW_FAULT_TRIALS", "1")))


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
    """Twilio sends only the templates an account has (21655 otherwise), and renders them:
    every template in the database is approved at the fake, as an operator has them approved
    (the defaults come with ``db upgrade``)."""
    await approve_templates(db, twilio)


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
    # Who each notification belongs to and who answered it: the ledger verdict needs both.
    owners: dict[str, MadeMerchant] = field(default_factory=dict)
    answerers: dict[str, int] = field(default_factory=dict)

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
        self.owners[view.notification_id] = merchant
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
        self.owners[view.notification_id] = merchant
        return view.notification_id

    async def answer(self, public: str, admin_id: int, words: str, field: str = "answer") -> None:
        self.answerers[public] = admin_id
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
    """``lost`` and ``duplicates`` come from the fake Twilio's ledger alone (what people
    received); ``problems`` also hold what the product's own records got wrong."""

    lost: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> None:
        assert self.ok, "\n".join(self.problems)


async def verify(
    stack: Stack,
    expected: Mapping[str, str | set[str]],
    merchants: list[MadeMerchant],
    *,
    asked: Mapping[str, set[str]] | None = None,
    unreachable: set[str] | frozenset[str] = frozenset(),
    customer_messages: Mapping[str, int] | None = None,
) -> Verdict:
    """The verdict on ``expected`` (public id → status) once everything has settled.

    What people received is judged from the fake's ledger (tests/fixtures/ledger.py): by
    default every admin of the notification's merchant must have been asked; ``asked``
    (public id → phones) says otherwise, ``unreachable`` names phones the test made refuse
    everything and ``customer_messages`` overrides what the customer is owed. The workflow's
    result, the database row and the product's ledger rows are checked too (problems, not
    losses)."""
    verdict = Verdict()
    unsettled = await settle(stack.client, list(expected), stack.twilio)
    verdict.problems.extend(unsettled)

    finals: dict[str, str] = {}
    for public, want in expected.items():
        wanted = {want} if isinstance(want, str) else set(want)
        handle = stack.client.get_workflow_handle(public, result_type=NotificationOutcome)
        description = await handle.describe()
        async with stack.db() as session:
            row = await session.get(Notification, parse_notification_id(public))
        db_status = row.status if row else None
        if description.status != WorkflowExecutionStatus.COMPLETED:
            verdict.problems.append(f"{public}: workflow {description.status}, not completed")
            finals[public] = db_status or sorted(wanted)[0]
            continue
        outcome: NotificationOutcome = await handle.result()
        finals[public] = outcome.status.value
        if outcome.status.value not in wanted or db_status not in wanted:
            verdict.problems.append(
                f"{public}: workflow says {outcome.status.value}, database {db_status}, "
                f"wanted {sorted(wanted)}"
            )

    # What people received, from the fake's ledger alone.
    expectations = []
    for public, final in finals.items():
        merchant = stack.owners.get(public)
        if merchant is None:
            raise HarnessError(f"{public} was not requested through this Stack")
        if merchant not in merchants:
            raise HarnessError(f"{public}'s merchant is not among the merchants judged")
        answerer = stack.answerers.get(public)
        expectations.append(
            Expectation(
                public=public,
                status=final,
                customer=merchant.customer_phone,
                staff=set(merchant.phones.values()),
                asked=set(
                    asked[public]
                    if asked and public in asked
                    else (merchant.phones[a] for a in merchant.admin_ids)
                ),
                answerer=merchant.phones[answerer] if answerer is not None else None,
                unreachable=set(unreachable),
                customer_messages=(customer_messages or {}).get(public),
            )
        )
    judged = ledger_verdict(stack.twilio.accepted(), expectations, stack.twilio.campaign_of)
    verdict.lost += judged.lost
    verdict.duplicates += judged.duplicates
    verdict.problems.extend(judged.problems)

    # The product's own records: nothing orphaned, nothing left half-way.
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
    ids = [parse_notification_id(p) for p in expected]
    missing = set(ids) - {n.id for n in notifications}
    if missing:
        verdict.problems.append(f"notifications not in the database: {sorted(missing)}")
    for table, count in orphans.items():
        if count:
            verdict.problems.append(f"{count} {table} rows point at no notification")
    by_id = {n.id: n for n in notifications}
    for n in notifications:
        public = format_notification_id(n.id)
        if not NotificationStatus(n.status).is_terminal:
            try:
                description = await stack.client.get_workflow_handle(public).describe()
                running = description.status == WorkflowExecutionStatus.RUNNING
            except RPCError:
                running = False
            if not running:
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
    """One trial = one injected fault. ``survived``: every check of the trial passed.
    ``lost`` / ``duplicates``: messages, from the fake's ledger. ``failed``: a trial judged
    clean on the ledger whose other checks failed. ``errors``: the trial broke before it could
    be judged (the test fails; nothing is counted as lost)."""

    injected: int = 0
    survived: int = 0
    lost: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: int = 0
    by_scenario: dict[str, list[int]] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"faults injected {self.injected}, survived {self.survived}, lost {self.lost}, "
            f"duplicates {self.duplicates}"
        )

    def problems_line(self) -> str:
        return f"trials failed {self.failed}, harness errors {self.errors}"

    def _row(self, name: str) -> list[int]:
        # injected, survived, lost, duplicates, failed, errors
        return self.by_scenario.setdefault(name, [0, 0, 0, 0, 0, 0])


TALLY = Tally()


class Scenario:
    """One injected fault. Counted as injected at once; everything else is counted when the
    ``async with scenario(...)`` block ends, after every check in it has run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.verdict: Verdict | None = None

    async def judge(
        self,
        stack: Stack,
        expected: Mapping[str, str | set[str]],
        merchants: list[MadeMerchant],
        **options: Any,
    ) -> Verdict:
        """The verdict on ``expected`` (public id → status) and on everything sent to the
        people of ``merchants`` (options: see :func:`verify`); asserted at once, counted when
        the trial ends."""
        verdict = await verify(stack, expected, merchants, **options)
        self.verdict = verdict
        verdict.check()
        return verdict


def count_trial(tally: Tally, current: Scenario, error: BaseException | None) -> None:
    """The trial's figures, once every check of it ran (or one of them raised ``error``)."""
    row = tally._row(current.name)
    verdict = current.verdict
    if verdict is None:
        # Never judged: a broken trial (harness, set-up, or a wait that timed out) is an
        # error of the run, reported as a failed test, never passed off as a loss.
        tally.errors += 1
        row[5] += 1
        return
    tally.lost += verdict.lost
    tally.duplicates += verdict.duplicates
    row[2] += verdict.lost
    row[3] += verdict.duplicates
    if error is None and verdict.ok:
        tally.survived += 1
        row[1] += 1
    elif verdict.lost == 0 and verdict.duplicates == 0:
        tally.failed += 1
        row[4] += 1


@asynccontextmanager
async def scenario(name: str, tally: Tally | None = None) -> AsyncIterator[Scenario]:
    tally = TALLY if tally is None else tally
    tally.injected += 1
    tally._row(name)[0] += 1
    current = Scenario(name)
    try:
        yield current
    except BaseException as exc:
        count_trial(tally, current, exc)
        raise
    if current.verdict is None:
        count_trial(tally, current, None)
        raise HarnessError(f"trial {name!r} ended without a verdict (judge was not called)")
    count_trial(tally, current, None)


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


def worker_application_name(task_queue: str) -> str:
    """The PostgreSQL ``application_name`` of the fault worker serving ``task_queue``."""
    return f"nf-worker-{task_queue}"[:63]


async def backends(admin_url: str, database: str, application_name: str) -> set[int]:
    """The backend pids of ``database`` whose connection says ``application_name``."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, application_name),
        )
        return {int(row[0]) for row in await cursor.fetchall()}


async def drop_connections(
    admin_url: str, database: str, application_name: str | None = None
) -> set[int]:
    """``pg_terminate_backend`` the connections to ``database`` (not our own) — only those of
    ``application_name`` when given; returns the pids terminated."""
    import psycopg

    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()" + (
        " AND application_name = %s" if application_name else ""
    )
    params: tuple[str, ...] = (database, application_name) if application_name else (database,)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        cursor = await conn.execute(
            f"SELECT pid, pg_terminate_backend(pid) FROM ({query}) AS targets", params
        )
        return {int(row[0]) for row in await cursor.fetchall() if row[1]}


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
