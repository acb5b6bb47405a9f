"""Masking, context and format of notifyflow.logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from notifyflow import logs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("to +15551234567 now", "to +*******4567 now"),
        ("whatsapp:+447700900123", "whatsapp:+********0123"),
        ("call +1 (555) 123-4567", "call +* (***) ***-4567"),
        ("phone 5551234567", "phone ******4567"),
        ("NOTIF_2147483647 stays", "NOTIF_2147483647 stays"),
        ("SM0123456789abcdef0123456789abcdef", "SM0123456789abcdef0123456789abcdef"),
        ("took 1234567.891 ms", "took 1234567.891 ms"),
        ("year 2025 id 42", "year 2025 id 42"),
        ("Authorization: Bearer abc.def-ghi_123=", "Authorization: Bearer ***"),
        ("basic QUM6c2VjcmV0", "basic ***"),
        ("AC" + "0" * 32 + ":tok3n", "AC***:***"),
        ("key sk-proj-abcdefghijklmnop1234", "key sk-***"),
        ("postgresql+psycopg://u:pw@h/db", "postgresql+psycopg://u:***@h/db"),
    ],
)
def test_mask_text(text: str, expected: str) -> None:
    assert logs.mask_text(text) == expected


def _capture(json_lines: bool) -> tuple[io.StringIO, logging.Handler]:
    logs.setup_logging("INFO", json_lines=json_lines)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "notifyflow")
    stream = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream, handler


def test_json_line_carries_context_and_masks_fields() -> None:
    stream, _ = _capture(json_lines=True)
    log = logging.getLogger("notifyflow.test")
    with logs.log_context(notification_id="NOTIF_7", merchant_id=3):
        log.info(
            "sent to %s",
            "+15551234567",
            extra={"to": "+15559876543", "nested": {"p": ["+15550001111"]}},
        )
    log.info("outside", extra={"temporal_activity": {"workflow_id": "wf-1"}})
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "sent to +*******4567"
    assert first["notification_id"] == "NOTIF_7" and first["merchant_id"] == 3
    assert first["to"] == "+*******6543"
    assert first["nested"] == {"p": ["+*******1111"]}
    assert "notification_id" not in second and second["workflow_id"] == "wf-1"


def test_exception_text_is_masked() -> None:
    stream, _ = _capture(json_lines=True)
    try:
        raise RuntimeError("401 for Bearer s3cr3t")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    entry = json.loads(stream.getvalue())
    assert "s3cr3t" not in entry["exc"] and "Bearer ***" in entry["exc"]


def test_extra_wins_over_context_and_noisy_loggers_are_quiet() -> None:
    stream, _ = _capture(json_lines=True)
    with logs.log_context(notification_id="NOTIF_1"):
        logging.getLogger("y").warning("w", extra={"notification_id": "NOTIF_2"})
        logging.getLogger("httpx").info("GET /")
    (entry,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert entry["notification_id"] == "NOTIF_2"


def test_level_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LOG_LEVEL_ENV, "debug")
    logs.setup_logging()
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("httpx").level == logging.NOTSET
    monkeypatch.setenv(logs.LOG_LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match=logs.LOG_LEVEL_ENV):
        logs.setup_logging()
