"""CLI conventions (issue 18): shell completion, ``--version``, help text on every option,
``--json`` on every command, ``db upgrade`` saying what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from notifyflow import __version__
from notifyflow.cli import app
from notifyflow.config import get_settings
from notifyflow.db.migrate import alembic_config

runner = CliRunner()
NOTIFYFLOW = Path(sys.prefix) / "bin" / "notifyflow"
# Typer's own options; they carry Typer's help text.
BUILTIN = {"help", "install_completion", "show_completion"}


def commands() -> Iterator[tuple[str, Any]]:
    # Duck-typed: Typer may build its commands on its own copy of Click.
    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}".strip())
        else:
            yield path, command

    yield from walk(typer.main.get_command(app), "")


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"notifyflow {path}: {param.name}"
        for path, command in [("", typer.main.get_command(app)), *commands()]
        for param in command.params
        if param.name not in BUILTIN and not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, f"options and arguments without help text: {missing}"
    for path, command in commands():
        assert (command.help or "").strip(), f"notifyflow {path} has no help"


def test_every_command_takes_json() -> None:
    found = {path: {o for p in c.params for o in getattr(p, "opts", [])} for path, c in commands()}
    assert "seed demo" in found and "db upgrade" in found
    without = sorted(path for path, opts in found.items() if "--json" not in opts)
    assert not without, f"commands without --json: {without}"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"notifyflow {__version__}\n"


def test_shell_completion() -> None:
    env = {**os.environ, "_NOTIFYFLOW_COMPLETE": "complete_bash"}

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        done = subprocess.run(
            [str(NOTIFYFLOW)],
            env={**env, "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert "seed" in complete("notifyflow se")
    assert "--status" in complete("notifyflow list --st")
    assert "upgrade" in complete("notifyflow db ")
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="notifyflow")
    assert script.exit_code == 0 and "_NOTIFYFLOW_COMPLETE" in script.stdout


@pytest.fixture
def fresh_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_db_upgrade_and_seed_demo_say_what_they_did(fresh_sqlite: str) -> None:
    from alembic.script import ScriptDirectory

    revisions = [
        s.revision
        for s in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    ]
    first = runner.invoke(app, ["db", "upgrade", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["from_revision"] is None and report["to_revision"] == revisions[-1]
    assert [m["revision"] for m in report["migrations_applied"]] == revisions
    assert all(m["description"] for m in report["migrations_applied"])
    assert report["templates_provisioned"] > 0

    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert "nothing to apply" in again.stdout and "provisioned 0 default" in again.stdout

    seeded = runner.invoke(app, ["seed", "demo", "--json"])
    assert seeded.exit_code == 0, seeded.output
    ids = json.loads(seeded.stdout)
    assert ids["created"] is True and ids["merchant_id"] >= 1 and len(ids["admin_ids"]) == 2
    reseeded = json.loads(runner.invoke(app, ["seed", "demo", "--json"]).stdout)
    assert reseeded["created"] is False
    assert {k: v for k, v in reseeded.items() if k not in ("created", "summary")} == {
        k: v for k, v in ids.items() if k not in ("created", "summary")
    }


def test_db_upgrade_failure_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["db", "upgrade", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "database_error"
    assert "pw" not in result.stdout
