"""Run a Starlette app with uvicorn on 127.0.0.1 in a background thread.

The fakes are started once per test session from sync or async fixtures alike: the server has
its own thread and event loop, so a test's loop never has to serve it. ``stop()`` releases any
handler parked in a simulated timeout first, so shutdown takes milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)


class ThreadedServer:
    """Owns the socket, the uvicorn server and the thread it runs in."""

    def __init__(self, app: Starlette, name: str) -> None:
        self._app = app
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        # Bumped to wake handlers sleeping in a simulated timeout (reset or stop).
        self._release_generation = 0
        self._release_lock = threading.Lock()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listener(self) -> socket.socket | None:
        """The listening socket while serving."""
        return self._socket

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> None:
        """Bind a free port, start serving, return once requests are accepted."""
        if self.running:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Answer at once, as a real API does: asyncio turns Nagle's algorithm off only on
        # sockets whose proto is IPPROTO_TCP, and this one's is 0, so without this an answer's
        # body waited ~40 ms for the client's delayed ACK on every back-to-back request of a
        # kept-alive connection. Accepted connections inherit the option.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-{self._name}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake {self._name} server did not start")
            time.sleep(0.005)
        log.debug("fake %s listening on %s", self._name, self.base_url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and join the thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.release_sleepers()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def release_sleepers(self) -> None:
        """Wake every handler parked in :meth:`sleep` (they then answer 504)."""
        with self._release_lock:
            self._release_generation += 1

    async def sleep(self, seconds: float) -> bool:
        """Sleep in the server loop; False if released early by reset/stop."""
        with self._release_lock:
            generation = self._release_generation
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            with self._release_lock:
                if self._release_generation != generation:
                    return False
        return True
