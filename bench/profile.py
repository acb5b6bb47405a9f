"""Summaries of a py-spy ``--format raw`` profile (collapsed stacks: ``f1;f2;…;fn count``,
each frame ``name (file:line)``): where the worker's CPU goes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")

# First match wins: a sample's leaf frame file -> the library that burns the CPU.
_LIBRARIES = (
    ("sqlalchemy/", "sqlalchemy"),
    ("psycopg", "psycopg"),
    ("aiosqlite", "aiosqlite"),
    ("temporalio/worker/workflow_sandbox", "temporalio sandbox"),
    ("temporalio/", "temporalio"),
    ("google/protobuf", "protobuf"),
    ("twilio/", "twilio"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("pydantic", "pydantic"),
    ("notifyflow/", "notifyflow"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("warnings", "warnings"),
    ("importlib", "import"),
    ("<frozen", "import"),
)

_ACTIVITY = re.compile(r"^NotificationActivities\.(\w+)$")


def _parse(line: str) -> tuple[list[tuple[str, str]], int] | None:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        return None
    frames = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw)
        frames.append((match["name"], match["file"]) if match else (raw, ""))
    return frames, int(count)


def _library(file: str) -> str:
    for needle, name in _LIBRARIES:
        if needle in file:
            return name
    return "other"


def _part(frames: list[tuple[str, str]]) -> str:
    """What the sample was doing: which activity, a workflow task, or the plumbing."""
    for name, file in frames:
        match = _ACTIVITY.match(name)
        if match:
            return f"activity {match.group(1)}"
        if "bench/workflows" in file or name == "noop":
            return "bench floor"
    for _name, file in frames:
        if "workflow_sandbox" in file or "_workflow_instance" in file or "_workflow.py" in file:
            return "workflow tasks (incl. sandbox)"
        if "_activity.py" in file:
            return "activity plumbing"
    return "other (event loop, bridge, pool)"


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        total += count
        leaf_name, leaf_file = frames[-1]
        self_time[f"{leaf_name} ({leaf_file})"] += count
        libraries[_library(leaf_file)] += count
        parts[_part(frames)] += count
        for key in {f"{name} ({file})" for name, file in frames}:
            inclusive[key] += count

    def share(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {"what": key, "share": round(value / total, 4) if total else 0.0}
            for key, value in counter.most_common(n)
        ]

    interesting = Counter(
        {
            k: v
            for k, v in inclusive.items()
            if any(
                s in k
                for s in (
                    "notifyflow/",
                    "sqlalchemy/",
                    "temporalio/",
                    "twilio/",
                    "aiohttp/",
                    "psycopg",
                    "pydantic",
                )
            )
        }
    )
    return {
        "path": str(path),
        "samples": total,
        "by_part": share(parts, 20),
        "by_library_self": share(libraries, 20),
        "top_self": share(self_time, top),
        "top_inclusive": share(interesting, top * 2),
    }
