"""Text every database and payload accepts. PostgreSQL refuses NUL in text, lone surrogates
(valid as JSON escapes) cannot be encoded as UTF-8, and deep nesting exhausts serializers: all
are refused where input enters, never found at insert time as a 500. Pure and sandbox-safe."""

from __future__ import annotations

from typing import Any


def plain_text(value: str) -> str:
    """Text every database accepts: PostgreSQL refuses NUL in text, and lone surrogates (valid
    in a JSON escape) cannot be encoded as UTF-8. Refusing them here keeps them from turning
    into a 500 at insert time."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


MAX_JSON_DEPTH = 32


def unstorable(value: Any, path: str) -> list[dict[str, str]]:
    """Where ``value`` holds what no database or payload should carry: NUL or lone surrogates
    (both valid as JSON escapes), or nesting deeper than ``MAX_JSON_DEPTH`` (serializers recurse).
    Refused here with its path, not as a failure deep inside the workflow or at insert time.
    Iterative, so a deeply nested body cannot exhaust this function's stack either."""
    found: list[dict[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack and len(found) < 20:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            try:
                plain_text(item)
            except ValueError as exc:
                found.append({"in": "body", "path": where[:200], "message": str(exc)})
        elif isinstance(item, dict | list) and depth >= MAX_JSON_DEPTH:
            found.append(
                {
                    "in": "body",
                    "path": where[:200],
                    "message": f"nested deeper than {MAX_JSON_DEPTH}",
                }
            )
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{where}/{key!s}", depth + 1))
                stack.append((child, f"{where}/{key!s}", depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}/{index}", depth + 1) for index, child in enumerate(item))
    return found
