"""Subprocesses the fault tests start, kill and restart: the Temporal dev server (file
persistence, same port and database across restarts) and the real worker.

Every wait is bounded; every process is started by us and stopped by its own pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from notifyflow.temporal_dev import dev_server_flags

ROOT = Path(__file__).resolve().parents[2]
TEMPORAL = Path(sys.prefix) / "bin" / "temporal"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _end(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Send ``sig`` to the process, wait for it; SIGKILL it if it outlives ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class DevServer:
    """``temporal server start-dev`` on 127.0.0.1 with ``--db-filename``: restartable."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.db_file = workdir / "temporal.db"
        self.log_file = workdir / "temporal.log"
        self.port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        args = [
            str(TEMPORAL),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--metrics-port",
            str(self.metrics_port),
            "--headless",
            "--log-level",
            "error",
            *dev_server_flags(),
        ]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited:\n{_tail(self.log_file)}")
            if self._healthy():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"temporal dev server not healthy in {timeout}s")

    def _healthy(self) -> bool:
        try:
            out = subprocess.run(
                [str(TEMPORAL), "operator", "cluster", "health", "--address", self.address],
                capture_output=True,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return b"SERVING" in out.stdout

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for the pid, so the port and the database file are free."""
        if self.proc is not None:
            _end(self.proc, signal.SIGTERM, timeout)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class WorkerProcess:
    """``python -m tests.faults.worker_proc`` with the given environment."""

    def __init__(self, env: Mapping[str, str], workdir: Path, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        self.log_file = workdir / f"{name}.log"
        self.ready_file = workdir / f"{name}.ready"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        if self.running:
            return
        self.ready_file.unlink(missing_ok=True)
        env = {**os.environ, **self.env, "FAULT_WORKER_READY_FILE": str(self.ready_file)}
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.worker_proc"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{_tail(self.log_file)}")
            if self.ready_file.exists():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"worker not ready in {timeout}s:\n{_tail(self.log_file)}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, in-flight activities are abandoned."""
        if self.proc is not None:
            _end(self.proc, signal.SIGKILL, 10)
            self.proc = None
            self.kills += 1

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None:
            _end(self.proc, signal.SIGTERM, timeout)
            self.proc = None

    def log_tail(self) -> str:
        return _tail(self.log_file)
