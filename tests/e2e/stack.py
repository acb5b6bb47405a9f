"""The product as an operator runs it, for the black-box tests: a Temporal dev server, then
``notifyflow db upgrade``, ``notifyflow worker`` and ``notifyflow api`` as subprocesses of their
own (process groups), configured by environment variables only, against the fake Twilio and
the fake OpenAI of ``tests/fakes``.

Nothing here writes to the product's database: merchants, users, documents, conversations and
customer messages are created over HTTP (:func:`open_shop`). The database is only *read*, to
learn the Content SIDs of the templates the product provisioned, so the fake Twilio renders
them as real Twilio renders approved templates.

Every wait is bounded; every process is started here and stopped by its own process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeOpenAI
from tests.fakes.twilio_server import FakeTwilio, normalize_number
from tests.faults.harness import until
from tests.faults.processes import ROOT, TEMPORAL, DevServer, free_port
from tests.fixtures.database import unique_phone

# What each team handles, as a merchant writes it in its SupportClassification documents
# (the title names the user type the classifier routes to).
CLASSIFICATIONS: dict[str, str] = {
    "sales": (
        "Sales team: questions about pricing, discounts and promotions, bulk or wholesale "
        "orders, product availability and stock, and help with buying or placing an order."
    ),
    "returns": (
        "Returns team: refunds, returns, exchanges, and orders that arrived damaged, "
        "incomplete or with the wrong items."
    ),
    "technical": (
        "Technical team: product setup and assembly, problems with the app, bugs, and "
        "products that are not working as expected."
    ),
}

NOTIFYFLOW = Path(sys.prefix) / "bin" / "notifyflow"
TASK_QUEUE = "notifyflow-e2e"
API_READY_TIMEOUT = 60.0  # a cold import of the whole application on a busy 2-core machine
WORKER_READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

# Variables of the product (and of its providers) that must not leak in from the shell.
_SCRUBBED_PREFIXES = ("NOTIFYFLOW_", "TEMPORAL_", "TWILIO_", "OPENAI_", "INSTAGRAM_")


def clean_environ() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k != "DATABASE_URL" and not k.upper().startswith(_SCRUBBED_PREFIXES)
    }


def closure_notice(public: str) -> str:
    """The contract text (DESIGN §2), written out: the tests do not import the product's."""
    return f"Notification {public} has been answered and is now closed."


def _tail(path: Path, lines: int = 12, width: int = 600) -> str:
    try:
        kept = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join(line if len(line) <= width else line[:width] + " …" for line in kept)


class ProductProcess:
    """One ``notifyflow …`` command in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], workdir: Path) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_file = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            log.write(f"--- start: notifyflow {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(NOTIFYFLOW), *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                process_group=0,
            )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the group, a bounded wait, then SIGKILL to whatever is left of it."""
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            _signal_group(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def log_tail(self) -> str:
        return f"--- {self.name} ({self.log_file}) ---\n{_tail(self.log_file)}"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class E2EStack:
    workdir: Path
    server: DevServer
    database_url: str
    twilio: FakeTwilio
    openai: FakeOpenAI
    api_port: int = field(default_factory=free_port)
    api: ProductProcess | None = None
    worker: ProductProcess | None = None
    frozen: bool = False
    # (campaign, language) → Content SID of the templates the product provisioned.
    templates: dict[tuple[str, str], str] = field(default_factory=dict)
    _starts: dict[str, int] = field(default_factory=dict)

    # ---- configuration -------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """What every product process gets: only environment variables (DESIGN §6)."""
        env = clean_environ()
        env.update(
            DATABASE_URL=self.database_url,
            TEMPORAL_ADDRESS=self.server.address,
            TEMPORAL_NAMESPACE="default",
            TEMPORAL_TASK_QUEUE=TASK_QUEUE,
            NOTIFYFLOW_CHANNEL="twilio",
            TWILIO_ACCOUNT_SID=self.twilio.account_sid,
            TWILIO_AUTH_TOKEN=self.twilio.auth_token,
            TWILIO_API_BASE_URL=self.twilio.base_url,
            NOTIFYFLOW_AI="openai",
            OPENAI_API_KEY=self.openai.api_key or FAKE_OPENAI_KEY,
            OPENAI_BASE_URL=self.openai.base_url,
            NOTIFYFLOW_PUBLIC_URL=self.api_url,
            NOTIFYFLOW_LOG_LEVEL="INFO",
            # The sweeper's period and grace as an operator may shorten them: an orphaned
            # request is started within seconds (the defaults, 10 s + 10 s, took 19 s here).
            NOTIFYFLOW_SWEEP_EVERY_SECONDS="1",
            NOTIFYFLOW_SWEEP_GRACE_SECONDS="2",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    # ---- the notifyflow CLI --------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``notifyflow ARGS`` as a user types it; a hang fails the test after ``timeout``."""
        try:
            return subprocess.run(
                [str(NOTIFYFLOW), *args],
                env=self.env(),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`notifyflow {' '.join(args)}` ran over {timeout}s") from None

    async def acli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.cli, *args, timeout=timeout)

    def db_upgrade(self) -> None:
        done = self.cli("db", "upgrade", timeout=120)
        assert done.returncode == 0, f"notifyflow db upgrade failed:\n{done.stdout}{done.stderr}"

    # ---- the services --------------------------------------------------------------------

    def _process(self, name: str, args: list[str], **extra_env: str) -> ProductProcess:
        n = self._starts.get(name, 0) + 1
        self._starts[name] = n
        proc = ProductProcess(f"{name}-{n}", args, self.env(**extra_env), self.workdir)
        proc.start()
        return proc

    def spawn_api(self, **extra_env: str) -> ProductProcess:
        assert self.api is None or not self.api.running, "the API is already running"
        self.api = self._process(
            "api", ["api", "--host", "127.0.0.1", "--port", str(self.api_port)], **extra_env
        )
        return self.api

    def spawn_worker(self, **extra_env: str) -> ProductProcess:
        assert self.worker is None or not self.worker.running, "a worker is already running"
        self.worker = self._process("worker", ["worker"], **extra_env)
        return self.worker

    def wait_api(self, timeout: float = API_READY_TIMEOUT) -> None:
        assert self.api is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                code = self.api.exited()
                assert code is None, f"the API exited ({code}) at start\n{self.api.log_tail()}"
                try:
                    if http.get(f"{self.api_url}/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"API not up in {timeout}s\n{self.logs()}"
                time.sleep(0.1)

    def wait_worker(self, timeout: float = WORKER_READY_TIMEOUT) -> None:
        """Until the worker polls the task queue (the server's own view, legacy mode: live)."""
        assert self.worker is not None
        deadline = time.monotonic() + timeout
        while True:
            code = self.worker.exited()
            assert code is None, f"the worker exited ({code}) at start\n{self.worker.log_tail()}"
            if self.worker_polling():
                return
            assert time.monotonic() < deadline, f"worker not polling in {timeout}s\n{self.logs()}"
            time.sleep(0.2)

    def worker_polling(self) -> bool:
        out = self.temporal(
            "task-queue", "describe", "--task-queue", TASK_QUEUE, "--legacy-mode", "-o", "json"
        )
        if out.returncode != 0:
            return False
        try:
            return bool(json.loads(out.stdout).get("pollers"))
        except ValueError:
            return False

    def start_api(self, **extra_env: str) -> None:
        self.spawn_api(**extra_env)
        self.wait_api()

    def start_worker(self, **extra_env: str) -> None:
        self.spawn_worker(**extra_env)
        self.wait_worker()

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def ensure_running(self) -> None:
        """A failed test may have left a service stopped (or Temporal frozen): back to normal."""
        self.thaw()
        spawned_api = spawned_worker = False
        if self.api is None or not self.api.running or self.api.env.get("NOTIFYFLOW_FAULT"):
            self.stop_api()
            self.spawn_api()
            spawned_api = True
        if self.worker is None or not self.worker.running:
            self.spawn_worker()
            spawned_worker = True
        if spawned_api:
            self.wait_api()
        if spawned_worker:
            self.wait_worker()

    def stop(self) -> None:
        self.thaw()
        self.stop_api()
        self.stop_worker()
        self.server.stop()

    def logs(self) -> str:
        return "\n".join(p.log_tail() for p in (self.api, self.worker) if p is not None)

    # ---- Temporal, from the outside --------------------------------------------------------

    def temporal(self, *args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [str(TEMPORAL), *args, "--address", self.server.address],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 124, "", "timed out")

    def workflow_status(self, workflow_id: str) -> str | None:
        """``RUNNING``, ``COMPLETED``, … of the workflow, or None when there is none."""
        out = self.temporal("workflow", "describe", "--workflow-id", workflow_id, "-o", "json")
        if out.returncode != 0:
            if "not found" in out.stderr.lower():
                return None
            raise AssertionError(f"`temporal workflow describe {workflow_id}`: {out.stderr}")
        info = json.loads(out.stdout).get("workflowExecutionInfo") or {}
        status = str(info.get("status", ""))
        return status.removeprefix("WORKFLOW_EXECUTION_STATUS_") or None

    async def aworkflow_status(self, workflow_id: str) -> str | None:
        return await asyncio.to_thread(self.workflow_status, workflow_id)

    @contextlib.contextmanager
    def temporal_frozen(self) -> Iterator[None]:
        """SIGSTOP the dev server: it holds its sockets open and answers nothing."""
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGSTOP)
        self.frozen = True
        try:
            yield
        finally:
            self.thaw()

    def thaw(self) -> None:
        if self.frozen and self.server.proc is not None:
            os.kill(self.server.proc.pid, signal.SIGCONT)
        self.frozen = False

    # ---- HTTP and the database (read only) -------------------------------------------------

    def http(self, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=timeout)

    async def register_templates(self) -> None:
        """Approve at the fake Twilio the Content definitions the product ships (what an operator
        does once in the Twilio console): it then renders them and checks their variables.
        They come from the product's own command (`notifyflow db content-definitions`), as an
        operator reads them; nothing is read from the product's database or its modules."""
        done = await self.acli("db", "content-definitions")
        assert done.returncode == 0, f"content-definitions failed:\n{done.stdout}{done.stderr}"
        self.templates = {}
        for template in json.loads(done.stdout):
            self.twilio.register_template(template["content_sid"], template["body"])
            self.templates[(template["campaign"], template["language"])] = template["content_sid"]

    def requests_to(self, phone: str, public: str) -> list[dict[str, Any]]:
        """The request campaigns of ``public`` the fake Twilio accepted for ``phone`` (not
        reminders: their slot 1 is the id too)."""
        sids = {sid for (c, _), sid in self.templates.items() if c in REQUEST_CAMPAIGNS}
        return requests_for(self.twilio, phone, public, sids or None)

    async def instructions(self, public: str) -> list[str]:
        """The instruction messages the product wrote for the recipients of ``public``, read
        over HTTP from each recipient's own conversation."""
        out: list[str] = []
        async with self.http() as http:
            view = (await http.get(f"/v1/notifications/{public}")).json()
            for recipient in view["recipients"]:
                page = (
                    await http.get(f"/v1/conversations/{recipient['conversation_id']}/messages")
                ).json()
                for message in page["items"] if isinstance(page, dict) else page:
                    data = message.get("other_data") or {}
                    if data.get("kind") == "notification_instruction" and public in data.get(
                        "notification_ids", []
                    ):
                        out.append(message["content"])
        return out


# ---- a shop, made over HTTP ----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: int
    phone: str
    user_type: str


@dataclass(frozen=True)
class Shop:
    merchant_id: int
    users: dict[str, list[Person]]
    conversation_id: int
    customer_phone: str

    @property
    def admins(self) -> list[Person]:
        return self.users.get("admin", [])

    def user(self, user_type: str) -> Person:
        return self.users[user_type][0]


CustomerWrote = Literal["now", "long ago"] | None


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


async def open_shop(
    http: httpx.AsyncClient,
    *,
    admins: int = 2,
    user_types: tuple[str, ...] = (),
    classifications: tuple[str, ...] = (),
    customer_wrote: CustomerWrote = "now",
    language: str = "en",
) -> Shop:
    """A merchant with ``admins`` admins and one user per entry of ``user_types``, a
    SupportClassification document per entry of ``classifications`` (sales, returns,
    technical), and a WhatsApp customer whose last message was just now, two days ago, or
    never."""
    merchant = await created(
        await http.post(
            "/v1/merchants",
            json={
                "name": f"E2E Shop {secrets.token_hex(3)}",
                "whatsapp_sender": f"whatsapp:{unique_phone()}",
                "default_language": "en",
                "timezone": "UTC",
            },
        )
    )
    mid = int(merchant["id"])
    users: dict[str, list[Person]] = {}
    for n, user_type in enumerate(["admin"] * admins + list(user_types), start=1):
        user = await created(
            await http.post(
                f"/v1/merchants/{mid}/users",
                json={
                    "name": f"{user_type.title()} {n}",
                    "phone": unique_phone(),
                    "user_type": user_type,
                },
            )
        )
        users.setdefault(user_type, []).append(Person(int(user["id"]), user["phone"], user_type))
    for title in classifications:
        await created(
            await http.post(
                f"/v1/merchants/{mid}/documents",
                json={
                    "category": "SupportClassification",
                    "title": title,
                    "content": CLASSIFICATIONS[title],
                },
            )
        )
    phone = unique_phone()
    conversation = await created(
        await http.post(
            "/v1/conversations",
            json={
                "merchant_id": mid,
                "channel": "whatsapp",
                "customer_phone": phone,
                "language": language,
            },
        )
    )
    cid = int(conversation["id"])
    if customer_wrote is not None:
        message: dict[str, Any] = {"role": "user", "content": "Hi! I have a question."}
        if customer_wrote == "long ago":
            message["created_at"] = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        await created(await http.post(f"/v1/conversations/{cid}/messages", json=message))
    return Shop(mid, users, cid, phone)


# ---- what the fake Twilio received -----------------------------------------------------------


def accepted(twilio: FakeTwilio, phone: str) -> list[dict[str, Any]]:
    return twilio.accepted(to=phone)


REQUEST_CAMPAIGNS = ("merchant_user_question_request", "merchant_user_override_request")


def requests_for(
    twilio: FakeTwilio, phone: str, public: str, sids: set[str] | None = None
) -> list[dict[str, Any]]:
    """The requests for ``public`` accepted for ``phone``: templates whose slot 1 is the id,
    of one of ``sids`` (the request campaigns' Content SIDs) when given."""
    return [
        m
        for m in accepted(twilio, phone)
        if m["kind"] == "template"
        and (m["variables"] or {}).get("1") == public
        and (sids is None or m["content_sid"] in sids)
    ]


def closure_notices(twilio: FakeTwilio, phone: str, public: str) -> list[dict[str, Any]]:
    """The closure notices for ``public``: the whole free-form body, or the one variable of a
    closure template."""
    notice = closure_notice(public)
    return [
        m
        for m in accepted(twilio, phone)
        if (m["kind"] == "text" and m["body"].strip() == notice)
        or (m["kind"] == "template" and m["variables"] == {"1": notice})
    ]


def failed_sends(twilio: FakeTwilio, phones: set[str]) -> int:
    """Sends to any of ``phones`` the fake refused (a fault or a validation error)."""
    wanted = {normalize_number(p) for p in phones}
    return sum(1 for e in twilio.sends() if e["to"] in wanted and not e["accepted"])


def words_of(message: dict[str, Any]) -> str:
    """Everything a person reads in an accepted message: its body and its variables."""
    return " ".join([message.get("body") or "", *(message.get("variables") or {}).values()])


async def wait_status(
    http: httpx.AsyncClient, public: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll ``GET /v1/notifications/{public}`` until its status is one of ``statuses``."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        response = await http.get(f"/v1/notifications/{public}")
        if response.status_code == 200:
            seen.update(response.json())
        return seen.get("status") in statuses

    try:
        await until(reached, f"{public} to be {sorted(statuses)}", timeout, every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen status {seen.get('status')!r}: {seen}") from None
    return seen
