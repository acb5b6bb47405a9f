"""The tests' fake Twilio in a process of its own, for the benchmarks.

Twilio does not share an interpreter with the product or with whoever measures it. The fake
used to run in a thread of the bench's driver, whose event loop drives 32 lifecycles, long-polls
histories and parses the fake's own requests: under load a request to the fake waited for the
driver's GIL before it was read and stamped, and that wait counted in the answer's
answer→delivered time. In a process of its own the fake stamps each message when it reads it
(the same wall clock as the driver's) and sends what the bench's tracker reads of each accepted
one to this process, where ``on_accept`` is called from a relay thread (as it was called from
the fake's server thread before). The relay can lag the fake's answers: :meth:`accepted` is the
fake's own count, to wait for before the tracker's counts are read as final.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


def _serve(control: Connection, events: Connection | None) -> None:
    """The child: the fake, its address out, then templates to register and counts to report
    until the parent closes its end."""
    from bench.tracker import BenchTwilio, relayed

    # The parent stops this process by closing the pipe; Ctrl-C is the parent's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fake = BenchTwilio()
    outbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    sender: threading.Thread | None = None
    if events is not None:

        def send_all(pipe: Connection) -> None:
            # A thread of its own: a full pipe never blocks the fake's event loop.
            while (entry := outbox.get()) is not None:
                try:
                    pipe.send(entry)
                except (BrokenPipeError, OSError):
                    return

        sender = threading.Thread(target=send_all, args=(events,), daemon=True)
        sender.start()
        fake.on_accept = lambda entry: outbox.put(relayed(entry))
    fake.start()
    try:
        control.send((fake.base_url, fake.account_sid, fake.auth_token))
        while True:
            command, *args = control.recv()
            if command == "template":
                fake.register_template(*args)
                control.send(None)
            elif command == "count":
                control.send(len(fake.accepted()))
    except EOFError:
        pass  # the parent closed its end: stop
    finally:
        fake.stop()
        if sender is not None:
            outbox.put(None)
            sender.join(5)


class FakeTwilioProcess:
    """What the benchmarks use of :class:`bench.tracker.BenchTwilio`, served by a child
    process. ``relay``: send each accepted message back for ``on_accept``."""

    def __init__(self, templates: Iterable[tuple[str, str]] = (), *, relay: bool = False) -> None:
        context = multiprocessing.get_context("spawn")
        self._control, child_control = context.Pipe()
        events, child_events = context.Pipe(duplex=False) if relay else (None, None)
        self.on_accept: Callable[[dict[str, Any]], None] | None = None
        self._process = context.Process(
            target=_serve, args=(child_control, child_events), daemon=True
        )
        self._process.start()
        # Only the child holds its ends now: if it dies, a recv here ends instead of waiting.
        child_control.close()
        self._relay: threading.Thread | None = None
        if events is not None and child_events is not None:
            child_events.close()
            self._relay = threading.Thread(
                target=self._forward, args=(events,), name="fake-twilio-relay", daemon=True
            )
            self._relay.start()
        self.base_url, self.account_sid, self.auth_token = self._answer("start")
        for content_sid, body in templates:
            self.register_template(content_sid, body)

    @property
    def pid(self) -> int:
        """The child's process id (its CPU counts as the driver's in the bench's figures)."""
        return int(self._process.pid or 0)

    def _forward(self, events: Connection) -> None:
        try:
            while True:
                try:
                    entry = events.recv()
                except (EOFError, OSError):
                    return
                callback = self.on_accept
                if callback is None:
                    continue
                try:
                    callback(entry)
                except Exception:  # the relay must outlive one bad entry
                    log.exception("on_accept failed for a message of the fake Twilio")
        finally:
            events.close()

    def _ask(self, what: str, *command: object) -> Any:
        try:
            self._control.send(command)
        except OSError:  # BrokenPipeError: the child is gone
            self.stop()
            raise RuntimeError(
                f"the fake Twilio process ended ({what}; exit code {self._process.exitcode})"
            ) from None
        return self._answer(what)

    def _answer(self, what: str) -> Any:
        if not self._control.poll(START_TIMEOUT_S):
            self.stop()
            raise RuntimeError(f"the fake Twilio process did not answer ({what})")
        try:
            return self._control.recv()
        except EOFError:
            self.stop()
            raise RuntimeError(
                f"the fake Twilio process ended ({what}; exit code {self._process.exitcode})"
            ) from None

    def register_template(self, content_sid: str, body: str) -> None:
        self._ask("template", "template", content_sid, body)

    def accepted(self) -> int:
        """How many messages the fake accepted so far (its own count, not the relay's)."""
        return int(self._ask("count", "count"))

    def stop(self) -> None:
        self._control.close()  # the child's recv ends: it stops its server and exits
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if self._relay is not None:
            self._relay.join(5)
