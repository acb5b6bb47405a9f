"""How we start ``temporal server start-dev`` everywhere (``make run``, the tests, the bench):
the flags that make the embedded server behave like production's."""

from __future__ import annotations

from notifyflow.search_attributes import SEARCH_ATTRIBUTES


def dev_server_flags() -> list[str]:
    """Flags for ``temporal server start-dev`` (``make run``, the tests, the bench): the four
    search attributes, and eager activity execution, which hands an activity scheduled by a
    workflow task straight back to the worker that completed it (one poll round trip less
    between an answer and its delivery). docker-compose sets the same in its dynamic config."""
    flags: list[str] = ["--dynamic-config-value", "system.enableActivityEagerExecution=true"]
    for key in SEARCH_ATTRIBUTES:
        kind = "Int" if key.indexed_value_type.name == "INT" else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
