"""Compile the workflow code once per worker process, not once per workflow run.

Temporal's sandbox imports a workflow's module (and every module it imports that is not passed
through, such as its packages) afresh for each workflow it runs and for each replay after a
cache eviction: that is what keeps one workflow's module state away from another's. Python's
import machinery then reads the module's bytecode from ``__pycache__`` or, when there is none,
compiles the source again. There is none whenever bytecode is not written —
``PYTHONDONTWRITEBYTECODE`` (our Dockerfile sets it, as do many CI and development setups), a
read-only source tree, an editable install — and then every new notification recompiled
``workflows/notification.py``: 9 % of the worker's CPU in the bench (docs/performance.md).

:func:`install` puts a finder first on ``sys.meta_path`` that hands out the workflows' modules
(and their packages: the sandbox re-imports those too) with a loader that keeps each compiled
code object for the life of the process. The module is still *executed* afresh in every
sandbox (a new module object, new globals), so the isolation the sandbox exists for is
unchanged; only the compilation, whose result is immutable, is shared. Every other import is
left to Python as before (keeping every module's code would cost memory for nothing).

:func:`sandboxed_runner` does the same for the sandbox's own code: the SDK's runner drives each
sandbox by ``exec``-ing short code *strings* in it — one per activation, and one per payload
it encodes or decodes (to ask the workflow for its serialization context) — and ``exec`` of a
string compiles it every time: about 40 compilations per notification, 15 % of the CPU of
replaying one (``python -m bench.replay``). The runner it returns compiles each distinct string
once; what runs in the sandbox, and how, is unchanged. The serialization context it asks
for about 30 times per notification (a pure function of the workflow's info and its pending
commands) is read from the sandboxed workflow directly, without an ``exec`` and the swap of the
import machinery around it (another 10 % of the replay's CPU):
tests/unit/test_workflow_code_cache.py checks that a codec sees the same contexts either way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from types import CodeType, ModuleType
from typing import Any

from temporalio.api.enums.v1 import CommandType
from temporalio.converter import SerializationContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails, _command_aware_visitor
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# The SDK's sandbox instance (private: pinned by the lock, and pinned down by
# tests/unit/test_workflow_code_cache.py, which fails if it stops being used).
from temporalio.worker.workflow_sandbox._runner import _Instance

# path -> code object; code objects are immutable and safe to share between threads.
_CODE: dict[str, CodeType] = {}
_LOCK = threading.Lock()


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType | None:
        path = self.get_filename(fullname)
        code = _CODE.get(path)
        if code is None:
            code = super().get_code(fullname)
            if code is not None:
                with _LOCK:
                    code = _CODE.setdefault(path, code)
        return code


class SandboxCodeFinder(importlib.abc.MetaPathFinder):
    """Finds what the path finder finds; the workflows' source modules get the compile-once
    loader."""

    def __init__(self) -> None:
        self.modules: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if (
            spec is None
            or spec.origin is None
            or type(spec.loader) is not importlib.machinery.SourceFileLoader
        ):
            return None  # let the rest of sys.meta_path decide, as without this finder
        spec.loader = _CompiledOnceLoader(fullname, spec.origin)
        return spec


def install(workflows: Iterable[type]) -> None:
    """For these workflow classes (idempotent); the worker calls it before it runs them."""
    finder = next((f for f in sys.meta_path if isinstance(f, SandboxCodeFinder)), None)
    if finder is None:
        finder = SandboxCodeFinder()
        sys.meta_path.insert(0, finder)
    for cls in workflows:
        parts = cls.__module__.split(".")
        finder.modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))


def compiled_modules() -> int:
    """How many source files the sandbox has compiled so far (for tests and diagnostics)."""
    return len(_CODE)


_NEXUS_OPERATION = CommandType.COMMAND_TYPE_SCHEDULE_NEXUS_OPERATION


@lru_cache(maxsize=256)
def _compiled(code: str) -> CodeType:
    # The SDK's strings are a handful of constants (and one per workflow class): few entries.
    return compile(code, "<string>", "exec", dont_inherit=True)


class _CompiledOnceInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # exec takes a code object as it takes a string: the same globals, the same run.
        super()._run_code(_compiled(code), **extra_globals)  # type: ignore[arg-type]

    def get_serialization_context(
        self, command_info: _command_aware_visitor.CommandInfo | None
    ) -> SerializationContext | None:
        # The SDK's own call, made without exec: for the workflow's own payloads and those of
        # activities, child workflows and signals it imports nothing and runs no workflow code
        # (the sandbox's import machinery has nothing to guard), it reads the workflow's info.
        # A Nexus operation's may import and call back (system endpoints): the SDK's way.
        in_sandbox: Any = self.globals_and_locals.get("__temporal_in_sandbox")
        if in_sandbox is None or (
            command_info is not None and command_info.command_type == _NEXUS_OPERATION
        ):
            return super().get_serialization_context(command_info)
        context: SerializationContext | None = in_sandbox.get_serialization_context(command_info)
        return context


class CompiledOnceSandboxedRunner(SandboxedWorkflowRunner):
    """The SDK's sandboxed runner (same restrictions, same isolation), whose sandboxes do not
    recompile the SDK's code strings on every activation, nor exec one per payload."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _CompiledOnceInstance(det, self.runner_class, self.restrictions)


def sandboxed_runner() -> SandboxedWorkflowRunner:
    """The runner the worker (and every replayer of its workflows) uses."""
    return CompiledOnceSandboxedRunner()


def sandbox_string_stats() -> Any:
    """Hits and misses of the sandboxes' compiled code strings (for tests and diagnostics)."""
    return _compiled.cache_info()
