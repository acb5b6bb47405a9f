"""``notifyflow dev`` as a user runs it: a real subprocess in a scratch directory, on free ports.

Covers start-up to a healthy API and Temporal UI, a clean Ctrl-C that leaves no process behind,
supervision (a dead child stops the stack), a clear error for a busy port, and Temporal state
that survives a restart of the stack. Linux only: the process-tree checks read /proc.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus

from notifyflow.search_attributes import SEARCH_ATTRIBUTES

READY_TIMEOUT = 120.0  # cold imports of the worker and the API on a slow CI machine
STOP_TIMEOUT = 60.0  # the stack's own bounds: 10 s API + 20 s worker + 15 s Temporal
READY_MARK = "notifyflow is ready"

# Variables that would point the stack at real services or change its ports and state.
_SCRUBBED = (
    "DATABASE_URL",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_MESSAGING_SERVICE_SID",
    "NOTIFYFLOW_API_TOKEN",
    "NOTIFYFLOW_PUBLIC_URL",
    "NOTIFYFLOW_HOME",
)


# --- processes, read from /proc ----------------------------------------------------------------

Proc = tuple[int, int]  # pid and start time: a pid alone may be reused


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and start time of ``pid``, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _tree(root: int) -> set[Proc]:
    """``root`` and every process descending from it, now."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    root_stat = _stat(root)
    found: set[Proc] = {(root, root_stat[2])} if root_stat else set()
    todo = [root]
    while todo:
        for pid, started in parents.get(todo.pop(), []):
            found.add((pid, started))
            todo.append(pid)
    return found


def _alive(proc: Proc) -> bool:
    stat = _stat(proc[0])
    return stat is not None and stat[2] == proc[1] and stat[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


# --- the stack under test ----------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class DevStack:
    workdir: Path
    api_port: int
    temporal_port: int
    ui_port: int
    process: subprocess.Popen[bytes] | None = None
    seen: set[Proc] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        env.update(
            DATABASE_URL=f"sqlite+aiosqlite:///{self.workdir / 'notifyflow-test.db'}",
            NOTIFYFLOW_AI="offline",
            NOTIFYFLOW_CHANNEL="console",
            NOTIFYFLOW_DEV_API_PORT=str(self.api_port),
            NOTIFYFLOW_DEV_TEMPORAL_PORT=str(self.temporal_port),
            NOTIFYFLOW_DEV_UI_PORT=str(self.ui_port),
        )
        return env

    def output(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.workdir / name).read_text(errors='replace')[-6000:]}"
            for name in ("dev.stdout", "dev.stderr")
            if (self.workdir / name).exists()
        )

    def start(self) -> None:
        self.seen = set()
        with (
            (self.workdir / "dev.stdout").open("wb") as out,
            (self.workdir / "dev.stderr").open("wb") as err,
        ):
            # Its own process group, like a shell job: a terminal's Ctrl-C goes to that group.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifyflow", "dev"],
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                process_group=0,
            )

    def remember_tree(self) -> set[Proc]:
        assert self.process is not None and self.seen is not None
        self.seen |= _tree(self.process.pid)
        return self.seen

    def wait_ready(self) -> float:
        assert self.process is not None
        started = time.monotonic()
        deadline = started + READY_TIMEOUT
        with httpx.Client(timeout=2.0) as http:
            while True:
                assert self.process.poll() is None, (
                    f"`notifyflow dev` exited with {self.process.returncode}\n{self.output()}"
                )
                self.remember_tree()
                if READY_MARK in (self.workdir / "dev.stdout").read_text(errors="replace"):
                    assert http.get(f"{self.api_url}/healthz").status_code == 200
                    return time.monotonic() - started
                assert time.monotonic() < deadline, f"not ready in time\n{self.output()}"
                time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it (to the foreground process group); the exit code."""
        assert self.process is not None
        self.remember_tree()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`notifyflow dev` still running {STOP_TIMEOUT:.0f} s after Ctrl-C")

    def survivors(self) -> list[str]:
        return [f"{pid}: {_cmdline(pid)}" for pid, t in sorted(self.seen or ()) if _alive((pid, t))]

    def kill_everything(self) -> None:
        """Test clean-up after a failure: nothing may outlive the test."""
        if self.process is not None and self.process.poll() is None:
            self.remember_tree()
        for pid, started in self.seen or ():
            if _alive((pid, started)):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    api_port, temporal_port, ui_port = _free_ports(3)
    stack = DevStack(tmp_path, api_port, temporal_port, ui_port)
    try:
        yield stack
    finally:
        stack.kill_everything()


# --- tests -------------------------------------------------------------------------------------


def test_dev_starts_everything_and_ctrl_c_leaves_nothing_behind(dev_stack: DevStack) -> None:
    dev_stack.start()
    dev_stack.wait_ready()

    banner = (dev_stack.workdir / "dev.stdout").read_text()
    assert f"http://127.0.0.1:{dev_stack.ui_port}" in banner
    assert f"{dev_stack.api_url}/v1/notifications" in banner
    assert "offline" in banner and "console" in banner
    with httpx.Client(timeout=5.0) as http:
        assert http.get(f"{dev_stack.api_url}/healthz").status_code == 200
        assert http.get(f"http://127.0.0.1:{dev_stack.ui_port}/").status_code == 200
    state = dev_stack.workdir / ".notifyflow"
    assert (state / "temporal.db").exists() and (state / "temporal.log").exists()

    tree = dev_stack.remember_tree()
    commands = [_cmdline(pid) for pid, _ in tree]
    assert any("start-dev" in c for c in commands), commands
    assert any(c.endswith("notifyflow worker") for c in commands), commands
    assert any("notifyflow api --host 127.0.0.1" in c for c in commands), commands

    assert dev_stack.interrupt() == 0, dev_stack.output()
    assert dev_stack.survivors() == []
    for port in (dev_stack.api_port, dev_stack.temporal_port, dev_stack.ui_port):
        assert _port_free(port), f"port {port} is still taken"


def test_a_dead_child_stops_the_whole_stack_with_an_error(dev_stack: DevStack) -> None:
    dev_stack.start()
    dev_stack.wait_ready()
    assert dev_stack.process is not None
    (worker,) = [
        pid for pid, _ in dev_stack.remember_tree() if _cmdline(pid).endswith("notifyflow worker")
    ]
    os.kill(worker, signal.SIGKILL)

    assert dev_stack.process.wait(timeout=STOP_TIMEOUT) == 1
    assert "the worker exited unexpectedly (killed by SIGKILL)" in dev_stack.output()
    assert dev_stack.survivors() == []


def test_a_busy_port_is_named_with_the_variable_that_moves_it(dev_stack: DevStack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", dev_stack.api_port))
        busy.listen()
        dev_stack.start()
        assert dev_stack.process is not None
        code = dev_stack.process.wait(timeout=60)
    assert code == 1
    stderr = (dev_stack.workdir / "dev.stderr").read_text()
    assert f"port {dev_stack.api_port} (API) is already in use" in stderr
    assert "NOTIFYFLOW_DEV_API_PORT" in stderr


async def _start_probe(address: str, workflow_id: str) -> None:
    client = await Client.connect(address)
    # A type no worker implements, on a queue nobody polls: it just stays open in the server.
    await client.start_workflow(
        "DevstackPersistenceProbe", id=workflow_id, task_queue=f"probe-{workflow_id}"
    )


async def _probe_status(address: str, workflow_id: str) -> tuple[object, set[str], object]:
    from temporalio.api.operatorservice.v1 import ListNexusEndpointsRequest

    client = await Client.connect(address)
    description = await client.get_workflow_handle(workflow_id).describe()
    attributes = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    endpoints = await client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(name="notifyflow")
    )
    targets = [e.spec.target.worker for e in endpoints.endpoints]
    return description.status, set(attributes.custom_attributes), targets


def test_temporal_state_survives_a_restart(dev_stack: DevStack) -> None:
    workflow_id = f"devstack-probe-{uuid.uuid4().hex[:8]}"
    dev_stack.start()
    dev_stack.wait_ready()
    asyncio.run(_start_probe(dev_stack.temporal_address, workflow_id))
    assert dev_stack.interrupt() == 0, dev_stack.output()

    dev_stack.start()  # same directory, same .notifyflow state, same ports
    dev_stack.wait_ready()
    status, attributes, targets = asyncio.run(
        _probe_status(dev_stack.temporal_address, workflow_id)
    )
    assert status == WorkflowExecutionStatus.RUNNING
    assert {key.name for key in SEARCH_ATTRIBUTES} <= attributes
    # The Nexus endpoint Voyager workflows call targets the stack's workers.
    assert [(t.namespace, t.task_queue) for t in targets] == [("default", "notifyflow")]

    assert dev_stack.interrupt() == 0, dev_stack.output()
    assert dev_stack.survivors() == []
