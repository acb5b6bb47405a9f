"""What reached people: the fake Twilio (in a process of its own, bench/fake_process.py) reports
every accepted message through a relay thread; the tracker ties each to its notification and
purpose, wakes whoever waits for it, and counts duplicates on the wire."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.fakes.twilio_server import FakeTwilio

NOTIF = re.compile(r"NOTIF_(\d+)")
CLOSURE_TEXT = "has been answered and is now closed"


class BenchTwilio(FakeTwilio):
    """The tests' fake Twilio, calling ``on_accept`` (from its server thread) for each message
    it accepts."""

    on_accept: Callable[[dict[str, Any]], None] | None = None

    def _record(
        self,
        entry: dict[str, Any],
        outcome: str,
        status: int,
        code: int | None = None,
        sid: str | None = None,
        accepted: bool = False,
    ) -> None:
        super()._record(entry, outcome, status, code, sid, accepted)
        callback = self.on_accept
        if accepted and callback is not None:
            callback(entry)


def relayed(entry: dict[str, Any]) -> dict[str, Any]:
    """What :meth:`Tracker._from_thread` reads of an accepted message: all a fake in another
    process needs to send (bench/fake_process.py)."""
    fields = entry.get("fields") or {}
    return {
        "to": entry.get("to"),
        "kind": entry.get("kind"),
        "time": entry["time"],
        "fields": {k: fields[k] for k in ("Body", "ContentVariables", "ContentSid") if k in fields},
    }


class Accepting(Protocol):
    """A fake that calls ``on_accept`` (from a thread of its own) for each accepted message:
    :class:`BenchTwilio`, or :class:`bench.fake_process.FakeTwilioProcess` relaying one."""

    on_accept: Callable[[dict[str, Any]], None] | None


@dataclass
class Seen:
    requests: int = 0
    closures: int = 0
    customer: int = 0
    customer_at: float | None = None
    # When the fake accepted the request message that completed the set (its clock).
    notified_at: float | None = None
    other: int = 0
    notified: asyncio.Event = field(default_factory=asyncio.Event)
    delivered: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Tracker:
    """Accepted messages by notification. ``campaigns`` maps a Content SID to its campaign."""

    loop: asyncio.AbstractEventLoop
    campaigns: dict[str, str]
    request_campaign: str
    closure_campaign: str
    customer_phones: set[str]
    expected_requests: int = 2
    # Admin phone -> how many request messages a notification of that admin's shop sends (the
    # shop's admin count): the fan-out series' shops have 1 to 20 admins.
    requests_by_phone: dict[str, int] = field(default_factory=dict)
    seen: dict[int, Seen] = field(default_factory=dict)
    keys: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    unmatched: int = 0
    accepted: int = 0

    def attach(self, fake: Accepting) -> None:
        fake.on_accept = self._from_thread

    def detach(self, fake: Accepting) -> None:
        fake.on_accept = None

    def get(self, n: int) -> Seen:
        item = self.seen.get(n)
        if item is None:
            item = self.seen[n] = Seen()
        return item

    def _from_thread(self, entry: dict[str, Any]) -> None:
        fields = entry.get("fields") or {}
        to = entry.get("to") or ""
        kind = entry.get("kind") or "text"
        text = fields.get("Body") or fields.get("ContentVariables") or ""
        match = NOTIF.search(text)
        if to in self.customer_phones:
            purpose = "customer"
        elif kind == "template":
            campaign = self.campaigns.get(
                fields.get("ContentSid", ""), fields.get("ContentSid", "")
            )
            purpose = {self.request_campaign: "request", self.closure_campaign: "closure"}.get(
                campaign, campaign
            )
        else:
            purpose = "closure" if CLOSURE_TEXT in text else "text"
        info = (int(match.group(1)) if match else None, to, purpose, entry["time"].timestamp())
        self.loop.call_soon_threadsafe(self._apply, info)

    def _apply(self, info: tuple[int | None, str, str, float]) -> None:
        n, to, purpose, at = info
        self.accepted += 1
        if n is None:
            self.unmatched += 1
            return
        self.keys[(n, to, purpose)] += 1
        item = self.get(n)
        if purpose == "request":
            item.requests += 1
            if item.requests >= self.requests_by_phone.get(to, self.expected_requests):
                if item.notified_at is None:
                    item.notified_at = at
                item.notified.set()
        elif purpose == "closure":
            item.closures += 1
        elif purpose == "customer":
            item.customer += 1
            if item.customer_at is None:
                item.customer_at = at
            item.delivered.set()
        else:
            item.other += 1

    def duplicates(self, ids: set[int] | None = None) -> int:
        """Messages accepted beyond the first per (notification, recipient, purpose)."""
        return sum(
            count - 1
            for (n, _, _), count in self.keys.items()
            if count > 1 and (ids is None or n in ids)
        )

    async def wait_notified(self, n: int, timeout: float) -> None:
        await asyncio.wait_for(self.get(n).notified.wait(), timeout)

    async def wait_delivered(self, n: int, timeout: float) -> float:
        item = self.get(n)
        await asyncio.wait_for(item.delivered.wait(), timeout)
        assert item.customer_at is not None
        return item.customer_at
