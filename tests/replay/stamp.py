"""What a directory of recorded histories was recorded against: a sha256 of the workflow code
(``src/notifyflow/workflows/*.py``, names and contents) stored beside the histories as
``recorded.json``, with the commit of ``main`` they were recorded on. The replay tests compare
it with today's code: a workflow change without re-recorded histories fails, naming the command
that re-records them (a change that must stay compatible with running workflows still needs
``workflow.patched``; the old histories' replay is what catches it, before re-recording)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# No resolve(): the workflow sandbox re-imports test modules (and this one) and refuses it.
ROOT = Path(__file__).parents[2]
WORKFLOWS = ROOT / "src" / "notifyflow" / "workflows"
STAMP = "recorded.json"


def workflow_sources() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.py"))


def workflow_digest() -> str:
    """sha256 over every workflow module's relative path and bytes, in name order."""
    digest = hashlib.sha256()
    for path in workflow_sources():
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_stamp(directory: Path, command: str) -> dict[str, Any]:
    stamp = {
        "workflow_sha256": workflow_digest(),
        "workflow_files": [p.relative_to(ROOT).as_posix() for p in workflow_sources()],
        "main_commit": _git("rev-parse", "main"),
        "recorded_on_commit": _git("rev-parse", "HEAD"),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "histories": sorted(p.name for p in directory.glob("*.json") if p.name != STAMP),
        "command": command,
    }
    (directory / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
    return stamp


def _shown(directory: Path) -> str:
    try:
        return directory.relative_to(ROOT).as_posix()
    except ValueError:
        return str(directory)


def read_stamp(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / STAMP).read_text())
    return data


def stale_reason(directory: Path) -> str | None:
    """Why the histories in ``directory`` are older than the workflow code, else None."""
    path = directory / STAMP
    if not path.exists():
        return f"{path} is missing: the histories say nothing of the code they were recorded on"
    stamp = read_stamp(directory)
    if stamp.get("workflow_sha256") != workflow_digest():
        return (
            f"the histories in {_shown(directory)} were recorded on workflow code "
            f"{stamp.get('workflow_sha256', '?')[:12]} (main {str(stamp.get('main_commit'))[:12]}"
            f"), today's is {workflow_digest()[:12]}: re-record with `{stamp.get('command')}`"
        )
    recorded = set(stamp.get("histories", []))
    present = {p.name for p in directory.glob("*.json") if p.name != STAMP}
    if recorded != present:
        return f"histories changed since recording: {sorted(recorded ^ present)}"
    return None
