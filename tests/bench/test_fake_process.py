"""The benchmarks' fake Twilio in a process of its own: messages it accepts reach ``on_accept``
in this process, its count is its own, and a child that dies is reported, not waited for."""

from __future__ import annotations

import threading

import httpx
import pytest
from bench.fake_process import FakeTwilioProcess


def _send(fake: FakeTwilioProcess, to: str, body: str) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
        auth=(fake.account_sid, fake.auth_token),
        data={"To": f"whatsapp:{to}", "From": "whatsapp:+15559990000", "Body": body},
        timeout=10,
    )


@pytest.mark.timeout(60)
def test_accepted_messages_are_relayed_and_counted() -> None:
    fake = FakeTwilioProcess(relay=True)
    seen: list[dict[str, object]] = []
    arrived = threading.Event()

    def on_accept(entry: dict[str, object]) -> None:
        seen.append(entry)
        if len(seen) == 2:
            arrived.set()

    fake.on_accept = on_accept
    try:
        assert _send(fake, "+15550000001", "first NOTIF_7").status_code == 201
        assert _send(fake, "+15550000002", "second").status_code == 201
        assert arrived.wait(10)
        assert fake.accepted() == 2
        assert [e["to"] for e in seen] == ["+15550000001", "+15550000002"]
        assert seen[0]["fields"] == {"Body": "first NOTIF_7"}
        assert seen[0]["kind"] == "text"
    finally:
        fake.stop()
    fake.stop()  # twice is harmless


@pytest.mark.timeout(60)
def test_a_dead_child_is_an_error_not_a_wait() -> None:
    fake = FakeTwilioProcess()
    try:
        fake._process.kill()
        fake._process.join(10)
        with pytest.raises(RuntimeError, match="fake Twilio process"):
            fake.accepted()
    finally:
        fake.stop()
