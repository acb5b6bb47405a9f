"""Process-wide logging: structured, masked, and carrying the notification being worked on.

``setup_logging()`` is called once at the start of every process (worker, API, ``dev``). It
writes to stderr: JSON lines when stderr is not a terminal (containers, CI, files), a readable
rich format on a terminal. The level comes from the argument, else ``NOTIFYFLOW_LOG_LEVEL``, else
``INFO``.

Every record is scrubbed before it is written, whichever library logged it: phone numbers keep
their last four digits (``+1******4567``) and credentials are redacted (``Bearer <token>``,
``Basic <b64>``, Twilio ``AC…:<auth token>`` pairs, ``sk-…`` API keys, ``user:password@`` in URLs).
Settings hold secrets as ``SecretStr``, which prints as ``**********``; the scrubbing is the
second line of defence for strings that come back from SDKs and HTTP errors.

Correlation fields ``notification_id``, ``workflow_id`` and ``merchant_id`` are added to every
record logged while they are bound, so one notification's story can be followed across the API,
the worker and the activities:

* around a unit of work (an API request once the id is known, an activity body)::

      with log_context(notification_id="NOTIF_12", merchant_id=3):
          logger.info("answer accepted")

  The binding lives in a ``ContextVar``: it follows asyncio tasks and ends with the block.
  Activities bind it at the top of their body from their input; ``workflow_id`` needs no
  binding when logging through ``activity.logger`` or ``workflow.logger``, because it is lifted
  from the details the Temporal SDK attaches to those records.
* for one record: ``logger.info("sent", extra={"notification_id": "NOTIF_12"})`` (wins over
  the bound value).

Any other ``extra=`` field is written as well (a JSON key, or ``key=value`` on a terminal).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from notifyflow.tracing import current_ids as current_trace_ids

LOG_LEVEL_ENV = "NOTIFYFLOW_LOG_LEVEL"

CONTEXT_FIELDS = ("notification_id", "workflow_id", "merchant_id")
# With tracing on (notifyflow.tracing), records also carry ``trace_id`` and ``span_id``.

# Libraries that log every request at INFO; they are only interesting when debugging.
NOISY_LOGGERS = (
    "httpx",
    "httpcore",
    "uvicorn.access",
    "twilio.http_client",
    "openai",
    "aiosqlite",
    "sqlalchemy.engine",
    "alembic",
)

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("notifyflow_log_context", default=_EMPTY)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__).union(
    ("message", "asctime", "taskName")
)
# uvicorn repeats its message with ANSI colours for its own formatter.
_DROPPED_EXTRAS = frozenset({"color_message"})
# Details the Temporal SDK's activity/workflow loggers attach; their workflow_id is lifted.
_TEMPORAL_EXTRAS = ("temporal_activity", "temporal_workflow")


# --- correlation context -----------------------------------------------------------------------


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind correlation fields (``None`` values are ignored) to every record logged inside."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> Mapping[str, Any]:
    """The fields bound by the innermost ``log_context`` (read-only)."""
    return MappingProxyType(dict(_context.get()))


class ContextFilter(logging.Filter):
    """Adds the bound correlation fields to each record, without overriding ``extra=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "trace_id"):
            # The current span's ids when tracing is on (one flag check when it is off).
            ids = current_trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        if not hasattr(record, "workflow_id"):
            for name in _TEMPORAL_EXTRAS:
                details = getattr(record, name, None)
                if isinstance(details, Mapping) and details.get("workflow_id"):
                    record.workflow_id = details["workflow_id"]
                    break
        return True


# --- masking -----------------------------------------------------------------------------------

# A phone number: ``+`` and 7–15 digits, optionally split by spaces, dots, dashes or brackets; or
# a bare run of 10–15 digits. Lookarounds keep ids such as NOTIF_2147483647, hex SIDs and decimals
# intact.
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[ .\-()]{0,2}\d){6,14}(?![\w])"
    r"|(?<![\w.+])\d{10,15}(?![\w.])"
)
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/\-]+=*", re.IGNORECASE), r"\1 ***"),
    (re.compile(r"\bAC[0-9a-fA-F]{32}:[^\s@'\"]+"), "AC***:***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-***"),
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+):[^\s/@]+@"), r"\1:***@"),
)


def _mask_phone(match: re.Match[str]) -> str:
    text = match.group(0)
    hide = sum(ch.isdigit() for ch in text) - 4
    out = []
    for ch in text:
        if ch.isdigit() and hide > 0:
            out.append("*")
            hide -= 1
        else:
            out.append(ch)
    return "".join(out)


def mask_text(text: str) -> str:
    """``text`` with credentials redacted and phone numbers cut to their last four digits."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _PHONE.sub(_mask_phone, text)


def mask_value(value: Any) -> Any:
    """Mask every string inside ``value`` (dicts, lists and tuples are walked)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


class MaskingFilter(logging.Filter):
    """Masks phone numbers and credentials in the message, its arguments and ``extra=`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = mask_text(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, mask_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
            record.exc_info = None  # formatters would render the unmasked traceback again
        return True


# --- formatting --------------------------------------------------------------------------------


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _RECORD_ATTRS and k not in _DROPPED_EXTRAS
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, correlation and extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``logger: message key=value …``, correlation fields first; the handler adds time/level.

    The logger name tells apart the processes sharing one terminal under ``notifyflow dev``.
    """

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        ordered = [k for k in CONTEXT_FIELDS if k in extras]
        ordered += [k for k in extras if k not in CONTEXT_FIELDS and k not in _TEMPORAL_EXTRAS]
        text = f"{record.name}: {record.getMessage()}"
        if ordered:
            text += "  " + " ".join(f"{k}={extras[k]}" for k in ordered)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        return text


# --- setup -------------------------------------------------------------------------------------


def _resolve_level(level: str | int | None) -> int:
    raw = level if level is not None else os.environ.get(LOG_LEVEL_ENV) or "INFO"
    if isinstance(raw, int):
        return raw
    resolved = logging.getLevelName(raw.strip().upper())
    if not isinstance(resolved, int):
        raise ValueError(
            f"{LOG_LEVEL_ENV}: {raw!r} is not a log level (DEBUG, INFO, WARNING, ERROR)"
        )
    return resolved


def _terminal_handler() -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(stderr=True),
        show_path=False,
        markup=False,
        rich_tracebacks=False,
        log_time_format="%H:%M:%S",
    )
    handler.setFormatter(TextFormatter())
    return handler


def setup_logging(level: str | int | None = None, *, json_lines: bool | None = None) -> None:
    """Configure the root logger once per process; calling it again replaces the setup.

    ``level``: explicit level, else ``NOTIFYFLOW_LOG_LEVEL``, else INFO. ``json_lines``: force the
    format; by default JSON unless stderr is a terminal.
    """
    resolved = _resolve_level(level)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    if json_lines:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = _terminal_handler()
    # Filters on the handler, not a logger, so records propagated from any library pass them.
    handler.addFilter(ContextFilter())
    handler.addFilter(MaskingFilter())
    handler.set_name("notifyflow")

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "notifyflow"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(resolved)

    quiet = logging.NOTSET if resolved <= logging.DEBUG else logging.WARNING
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)
