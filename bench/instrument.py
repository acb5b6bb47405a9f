"""Counters read by the benchmark: SQL statements and transactions on an engine, process CPU
time and memory from /proc."""

from __future__ import annotations

import gc
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.ext.asyncio import AsyncEngine

CACHE_HIT = CacheStats.CACHE_HIT

_WS = re.compile(r"\s+")
_IN_LIST = re.compile(r"\(\s*(?:%\(\w+\)s|\?|\$\d+)(?:\s*,\s*(?:%\(\w+\)s|\?|\$\d+))+\s*\)")
_NUMBERED = re.compile(r"%\((\w+?)_\d+\)s")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def normalize_statement(statement: str) -> str:
    """One line, IN lists and numbered parameters folded, so the same statement counts once."""
    text = _WS.sub(" ", statement).strip()
    text = _IN_LIST.sub("(…)", text)
    return _NUMBERED.sub(r"%(\1_n)s", text)[:400]


class SqlCounters:
    """Statements (``before_cursor_execute``), their time, transactions (``commit``), rollbacks,
    BEGINs and pool checkouts on one engine, and the round trips to the server they make: each
    statement, each BEGIN and COMMIT/ROLLBACK of a connection not in autocommit (psycopg sends
    them as commands of their own), and each pre-ping."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.commits = 0
        self.rollbacks = 0
        self.begins = 0
        self.checkouts = 0
        self.round_trips = 0
        # The pool pings a connection it hands out again, not a fresh one: count real pings.
        dialect = engine.sync_engine.dialect
        ping = dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> bool:
            self.round_trips += 1
            return bool(ping(dbapi_connection))

        dialect.do_ping = counted_ping  # type: ignore[method-assign]
        self.seconds = 0.0
        self.by_verb: Counter[str] = Counter()
        self.by_text: Counter[str] = Counter()
        self.time_by_text: Counter[str] = Counter()
        # Statements SQLAlchemy compiled again instead of taking from its cache (a statement
        # that is not cacheable, or one whose cache key differs on every call), by text.
        self.compiled = 0
        self.compiled_by_text: Counter[str] = Counter()
        # Compiled statements come from SQLAlchemy's cache: few distinct strings.
        self._normalized: dict[str, tuple[str, str]] = {}
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "commit", self._commit)
        event.listen(sync, "rollback", self._rollback)
        event.listen(sync, "begin", self._begin)
        event.listen(sync.pool, "checkout", self._checkout)

    def _before(
        self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, *_: Any
    ) -> None:
        self.statements += 1
        self.round_trips += 1
        known = self._normalized.get(statement)
        if known is None:
            text = normalize_statement(statement)
            known = (text, text.split(" ", 1)[0].upper())
            if len(self._normalized) < 5000:
                self._normalized[statement] = known
        text, verb = known
        self.by_verb[verb] += 1
        self.by_text[text] += 1
        if context is not None and getattr(context, "cache_hit", None) is not CACHE_HIT:
            self.compiled += 1
            self.compiled_by_text[text] += 1
        conn.info["bench_text"] = text
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, *_: Any) -> None:
        t0 = conn.info.pop("bench_t0", None)
        text = conn.info.pop("bench_text", None)
        if t0 is not None:
            elapsed = time.perf_counter() - t0
            self.seconds += elapsed
            if text is not None:
                self.time_by_text[text] += elapsed

    def _commit(self, conn: Any) -> None:
        self.commits += 1
        self.round_trips += _in_transaction(conn)

    def _rollback(self, conn: Any) -> None:
        self.rollbacks += 1
        self.round_trips += _in_transaction(conn)

    def _begin(self, conn: Any) -> None:
        self.begins += 1
        self.round_trips += _in_transaction(conn)

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "statements": self.statements,
            "commits": self.commits,
            "rollbacks": self.rollbacks,
            "begins": self.begins,
            "checkouts": self.checkouts,
            "round_trips": self.round_trips,
            "sql_seconds": self.seconds,
            "compiled": self.compiled,
            "by_verb": dict(self.by_verb),
        }

    def statement_table(self) -> dict[str, dict[str, float]]:
        return {
            text: {
                "count": count,
                "seconds": self.time_by_text.get(text, 0.0),
                "compiled": self.compiled_by_text.get(text, 0),
            }
            for text, count in self.by_text.items()
        }


def _in_transaction(conn: Any) -> int:
    """1 when the connection runs real transactions (its BEGIN, COMMIT and ROLLBACK are round
    trips), 0 in autocommit (SQLAlchemy still reports them; psycopg sends nothing)."""
    return 0 if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT" else 1


def self_cpu_ms() -> float:
    t = os.times()
    return (t.user + t.system) * 1000.0


class GcClock:
    """CPU time the process spends in the cyclic garbage collector, and its collections per
    generation (``gc.callbacks``). py-spy cannot show it: a collection runs inside whatever
    allocation triggered it, so its cost is spread over those frames. Timed with the
    collecting thread's own CPU clock: the process's would add what the SDK's Rust threads
    did meanwhile."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.cpu_ms = 0.0
        self._started = 0.0

    def install(self) -> GcClock:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        self.collections[int(info["generation"])] += 1
        self.cpu_ms += (time.thread_time() - self._started) * 1000.0

    def snapshot(self) -> dict[str, Any]:
        return {"collections": list(self.collections), "cpu_ms": round(self.cpu_ms, 3)}


def proc_cpu_ms(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in ms; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / CLOCK_TICKS


def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak) from /proc/<pid>/status, in MB (1 MB = 2**20 bytes)."""
    out: dict[str, float] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024.0
    return out


def postgres_cpu_ms(database: str | None) -> float:
    """CPU of the PostgreSQL backends serving ``database`` (by their process title), in ms.
    Approximate: a backend that exits between two readings takes its time with it."""
    if not database:
        return 0.0
    total = 0.0
    needle = f" {database} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not cmdline.startswith(b"postgres:") or needle not in cmdline.replace(b"\0", b" "):
            continue
        cpu = proc_cpu_ms(int(entry.name))
        if cpu is not None:
            total += cpu
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0]
    except OSError:
        return 0.0, 0.0
    values = [float(v) for v in first.split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)
